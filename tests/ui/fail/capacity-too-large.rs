use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = 1_048_577)]
struct Float(f64);

#[derive(FreeListed)]
#[free_list(capacity = 100_000_000_000_000_000_000)]
struct Int(i64);

fn main() {}
