use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = 100f32)]
struct Float(f64);

#[derive(FreeListed)]
#[free_list(capacity = 100slots)]
struct Int(i64);

fn main() {}
