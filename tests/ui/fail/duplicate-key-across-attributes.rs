use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(name = "PyFloatObject", capacity = 100)]
#[free_list(name = "Float")]
struct Float(f64);

fn main() {}
