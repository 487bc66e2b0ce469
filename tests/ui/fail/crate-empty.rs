use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = "")]
struct Float(f64);

fn main() {}
