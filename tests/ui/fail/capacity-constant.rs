use pyalloc::FreeListed;

const FLOAT_CAPACITY: usize = 100;

#[derive(FreeListed)]
#[free_list(capacity = FLOAT_CAPACITY)]
struct Float(f64);

fn main() {
    let _ = FLOAT_CAPACITY;
}
