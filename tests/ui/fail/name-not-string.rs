use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(name = PyFloatObject)]
struct Float(f64);

fn main() {}
