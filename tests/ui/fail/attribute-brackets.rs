use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list[capacity = 100]]
struct Float(f64);

fn main() {}
