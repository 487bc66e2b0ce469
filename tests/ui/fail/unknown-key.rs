use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capcity = 100)]
struct Float(f64);

fn main() {}
