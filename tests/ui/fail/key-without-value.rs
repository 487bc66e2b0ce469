use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity)]
struct Float(f64);

#[derive(FreeListed)]
#[free_list(name("Int"))]
struct Int(i64);

fn main() {}
