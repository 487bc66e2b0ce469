use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(name = "")]
struct Float(f64);

fn main() {}
