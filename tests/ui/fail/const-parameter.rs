use pyalloc::FreeListed;

#[derive(FreeListed)]
struct Buffer<const N: usize>([u8; N]);

fn main() {}
