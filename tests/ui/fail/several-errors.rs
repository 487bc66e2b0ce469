// Every problem is reported in one build, each at its own token.
use pyalloc::FreeListed;

#[derive(FreeListed)]
#[free_list(capacity = 0, nmae = "Pair")]
#[free_list(name = "")]
struct Pair<A, B, const N: usize>([(A, B); N]);

fn main() {}
