use pyalloc::FreeListed;

#[derive(FreeListed)]
struct Point {
    #[free_list(capacity = 100)]
    x: f64,
    y: f64,
}

fn main() {}
