use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = "pyalloc")]
#[free_list(capacity = 10, crate = "::pyalloc")]
struct Float(f64);

fn main() {}
