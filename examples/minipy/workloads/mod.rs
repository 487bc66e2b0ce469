//! The workloads, each modelled on a pyperformance benchmark and named after it, written
//! against the safe [`Obj`](crate::model::Obj) API only: the same code runs in every memory
//! mode.

pub(crate) mod float;
pub(crate) mod json_dumps;
pub(crate) mod nqueens;
pub(crate) mod richards;

use crate::model::Runtime;

/// Runs a workload `size` times on a runtime. `Ok` carries a summary of the result that
/// must be identical in every memory mode; `Err` says how the result differs from the known
/// answer.
pub(crate) type RunFn = for<'r> fn(&'r Runtime<'r>, usize) -> Result<String, String>;

/// One workload of the command line.
#[derive(Debug)]
pub(crate) struct Workload {
    /// Its name, the pyperformance benchmark it is modelled on.
    pub(crate) name: &'static str,
    /// What one unit of `--size` is.
    pub(crate) unit: &'static str,
    /// The size the no-argument run uses: about a quarter of a second per run and mode on a
    /// 2-core VM, so that the default command (5 runs of 3 modes) stays short.
    pub(crate) default_size: usize,
    /// The workload.
    pub(crate) run: RunFn,
}

/// Every workload, in the order the table lists them.
pub(crate) const WORKLOADS: &[Workload] = &[
    Workload {
        name: "nqueens",
        unit: "solves of 8 queens",
        default_size: nqueens::DEFAULT_LOOPS,
        run: nqueens::run,
    },
    Workload {
        name: "json_dumps",
        unit: "passes over pyperformance's EMPTY, SIMPLE, NESTED, HUGE cases",
        default_size: json_dumps::DEFAULT_LOOPS,
        run: json_dumps::run,
    },
    Workload {
        name: "float",
        unit: "runs of 100,000 points",
        default_size: float::DEFAULT_LOOPS,
        run: float::run,
    },
    Workload {
        name: "richards",
        unit: "iterations of the scheduler",
        default_size: richards::DEFAULT_LOOPS,
        run: richards::run,
    },
];

/// The workload called `name`.
pub(crate) fn find(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}
