use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(crate = "does_not_exist")]
struct Float(f64);

fn main() {}
