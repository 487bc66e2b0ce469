use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = 0)]
struct Float(f64);

fn main() {}
