use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = pyalloc)]
struct Float(f64);

fn main() {}
