use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = 100 name = "Float")]
struct Float(f64);

fn main() {}
