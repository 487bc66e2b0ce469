use pyalloc::FreeListed;

#[derive(FreeListed)]
enum Value {
    #[free_list(capacity = 100)]
    Int(i64),
    Float(f64),
}

fn main() {}
