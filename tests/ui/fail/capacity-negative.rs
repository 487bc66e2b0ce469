use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = -1)]
struct Float(f64);

fn main() {}
