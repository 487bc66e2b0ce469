use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list = 3]
struct Float(f64);

fn main() {}
