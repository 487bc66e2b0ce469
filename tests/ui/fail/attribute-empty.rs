use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list()]
struct Float(f64);

fn main() {}
