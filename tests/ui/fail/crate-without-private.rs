use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = "std")]
struct Float(f64);

fn main() {}
