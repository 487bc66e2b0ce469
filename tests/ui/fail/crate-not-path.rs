use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = "pyalloc-core")]
struct Float(f64);

fn main() {}
