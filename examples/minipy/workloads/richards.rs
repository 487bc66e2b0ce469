//! `richards`, after pyperformance's `bm_richards`: Martin Richards' operating-system task
//! scheduler simulation. Tasks, task records, task states and packets are objects whose
//! attributes live in dicts (instance `__dict__`s) keyed by interned strings; packets move
//! between task queues as linked lists through their `link` attribute; method calls become
//! Rust functions, dispatched on the task's `__class__`. The object graph is long-lived and
//! mutated in place; what comes and goes are the ints of counters and packet data, and the
//! dicts of `TaskState()` temporaries.
//!
//! As in the benchmark, tasks of earlier iterations stay reachable through the `link` of the
//! next iteration's first task, so the graph grows by one task list per iteration and is
//! freed at the end, in one chain of deallocations as deep as the number of tasks.
//!
//! Known answer: each iteration ends with `holdCount == 9297` and `qpktCount == 23246`.

use crate::model::{Obj, Runtime};

/// Scheduler iterations per run of the command (about 0.25 s per mode on a 2-core VM).
pub(crate) const DEFAULT_LOOPS: usize = 15;

/// `taskWorkArea.holdCount` after each iteration.
pub(crate) const EXPECTED_HOLD_COUNT: i64 = 9297;
/// `taskWorkArea.qpktCount` after each iteration.
pub(crate) const EXPECTED_QPKT_COUNT: i64 = 23246;

const I_IDLE: i64 = 1;
const I_WORK: i64 = 2;
const I_HANDLERA: i64 = 3;
const I_HANDLERB: i64 = 4;
const I_DEVA: i64 = 5;
const I_DEVB: i64 = 6;
const K_DEV: i64 = 1000;
const K_WORK: i64 = 1001;
const BUFSIZE: usize = 4;
const TASKTABSIZE: usize = 10;

/// The interned attribute names.
struct Names<'r> {
    class: Obj<'r>,
    link: Obj<'r>,
    ident: Obj<'r>,
    priority: Obj<'r>,
    input: Obj<'r>,
    packet_pending: Obj<'r>,
    task_waiting: Obj<'r>,
    task_holding: Obj<'r>,
    handle: Obj<'r>,
    kind: Obj<'r>,
    datum: Obj<'r>,
    data: Obj<'r>,
    pending: Obj<'r>,
    control: Obj<'r>,
    count: Obj<'r>,
    work_in: Obj<'r>,
    device_in: Obj<'r>,
    destination: Obj<'r>,
    task_tab: Obj<'r>,
    task_list: Obj<'r>,
    hold_count: Obj<'r>,
    qpkt_count: Obj<'r>,
}

/// The module's globals: classes (as their names), constants, and `taskWorkArea`.
struct Richards<'r> {
    rt: &'r Runtime<'r>,
    n: Names<'r>,
    device_task: Obj<'r>,
    handler_task: Obj<'r>,
    idle_task: Obj<'r>,
    work_task: Obj<'r>,
    none: Obj<'r>,
    true_: Obj<'r>,
    false_: Obj<'r>,
    zero: Obj<'r>,
    one: Obj<'r>,
    two: Obj<'r>,
    bufsize: Obj<'r>,
    k_work: Obj<'r>,
    i_handlera: Obj<'r>,
    i_handlerb: Obj<'r>,
    twenty_six: Obj<'r>,
    xor_mask: Obj<'r>,
    letter_a: Obj<'r>,
    /// `taskWorkArea`.
    wa: Obj<'r>,
}

impl<'r> Richards<'r> {
    fn new(rt: &'r Runtime<'r>) -> Self {
        let s = |name: &str| rt.str(name);
        let n = Names {
            class: s("__class__"),
            link: s("link"),
            ident: s("ident"),
            priority: s("priority"),
            input: s("input"),
            packet_pending: s("packet_pending"),
            task_waiting: s("task_waiting"),
            task_holding: s("task_holding"),
            handle: s("handle"),
            kind: s("kind"),
            datum: s("datum"),
            data: s("data"),
            pending: s("pending"),
            control: s("control"),
            count: s("count"),
            work_in: s("work_in"),
            device_in: s("device_in"),
            destination: s("destination"),
            task_tab: s("taskTab"),
            task_list: s("taskList"),
            hold_count: s("holdCount"),
            qpkt_count: s("qpktCount"),
        };
        // taskWorkArea = TaskWorkArea()
        let wa = rt.dict();
        wa.set(&n.task_tab, &rt.list_repeat(&rt.none(), TASKTABSIZE));
        wa.set(&n.task_list, &rt.none());
        wa.set(&n.hold_count, &rt.int(0));
        wa.set(&n.qpkt_count, &rt.int(0));
        Richards {
            rt,
            device_task: s("DeviceTask"),
            handler_task: s("HandlerTask"),
            idle_task: s("IdleTask"),
            work_task: s("WorkTask"),
            n,
            none: rt.none(),
            true_: rt.bool(true),
            false_: rt.bool(false),
            zero: rt.int(0),
            one: rt.int(1),
            two: rt.int(2),
            bufsize: rt.int(BUFSIZE as i64),
            k_work: rt.int(K_WORK),
            i_handlera: rt.int(I_HANDLERA),
            i_handlerb: rt.int(I_HANDLERB),
            twenty_six: rt.int(26),
            xor_mask: rt.int(0xd008),
            letter_a: rt.int('A' as i64),
            wa,
        }
    }

    fn flag(&self, b: bool) -> &Obj<'r> {
        if b {
            &self.true_
        } else {
            &self.false_
        }
    }

    // --- Packet ---------------------------------------------------------------------------

    /// `Packet(l, i, k)`.
    fn packet(&self, link: &Obj<'r>, ident: i64, kind: i64) -> Obj<'r> {
        let rt = self.rt;
        let p = rt.dict();
        p.set(&self.n.link, link);
        p.set(&self.n.ident, &rt.int(ident));
        p.set(&self.n.kind, &rt.int(kind));
        p.set(&self.n.datum, &self.zero);
        p.set(&self.n.data, &rt.list_repeat(&self.zero, BUFSIZE));
        p
    }

    /// `Packet.append_to(self, lst)`.
    fn append_to(&self, pkt: &Obj<'r>, lst: &Obj<'r>) -> Obj<'r> {
        pkt.set(&self.n.link, &self.none);
        if lst.is_none() {
            return pkt.clone();
        }
        let mut p = lst.clone();
        let mut next = p.getitem(&self.n.link);
        while !next.is_none() {
            p = next;
            next = p.getitem(&self.n.link);
        }
        p.set(&self.n.link, pkt);
        lst.clone()
    }

    // --- TaskState ------------------------------------------------------------------------

    /// Sets the three state flags of a task or task state.
    fn set_state(&self, t: &Obj<'r>, pending: bool, waiting: bool, holding: bool) {
        t.set(&self.n.packet_pending, self.flag(pending));
        t.set(&self.n.task_waiting, self.flag(waiting));
        t.set(&self.n.task_holding, self.flag(holding));
    }

    /// `TaskState()` then one of its state-setting methods.
    fn task_state(&self, pending: bool, waiting: bool, holding: bool) -> Obj<'r> {
        let st = self.rt.dict();
        self.set_state(&st, true, false, false); // TaskState.__init__
        self.set_state(&st, pending, waiting, holding);
        st
    }

    fn is_task_holding_or_waiting(&self, t: &Obj<'r>) -> bool {
        // self.task_holding or (not self.packet_pending and self.task_waiting)
        t.getitem(&self.n.task_holding).truthy()
            || (!t.getitem(&self.n.packet_pending).truthy()
                && t.getitem(&self.n.task_waiting).truthy())
    }

    fn is_waiting_with_packet(&self, t: &Obj<'r>) -> bool {
        // self.packet_pending and self.task_waiting and not self.task_holding
        t.getitem(&self.n.packet_pending).truthy()
            && t.getitem(&self.n.task_waiting).truthy()
            && !t.getitem(&self.n.task_holding).truthy()
    }

    // --- Task -----------------------------------------------------------------------------

    /// `Task.__init__` for a task of `class`.
    fn task(&self, class: &Obj<'r>, i: i64, p: i64, w: &Obj<'r>, state: &Obj<'r>, r: &Obj<'r>) {
        let rt = self.rt;
        let t = rt.dict();
        t.set(&self.n.class, class);
        t.set(&self.n.link, &self.wa.getitem(&self.n.task_list));
        t.set(&self.n.ident, &rt.int(i));
        t.set(&self.n.priority, &rt.int(p));
        t.set(&self.n.input, w);
        t.set(
            &self.n.packet_pending,
            &state.getitem(&self.n.packet_pending),
        );
        t.set(&self.n.task_waiting, &state.getitem(&self.n.task_waiting));
        t.set(&self.n.task_holding, &state.getitem(&self.n.task_holding));
        t.set(&self.n.handle, r);
        self.wa.set(&self.n.task_list, &t);
        self.wa.getitem(&self.n.task_tab).set_at(i as isize, &t);
    }

    /// `Task.addPacket(self, p, old)`.
    fn add_packet(&self, t: &Obj<'r>, p: &Obj<'r>, old: &Obj<'r>) -> Obj<'r> {
        let input = t.getitem(&self.n.input);
        if input.is_none() {
            t.set(&self.n.input, p);
            t.set(&self.n.packet_pending, &self.true_);
            if t.getitem(&self.n.priority)
                .gt(&old.getitem(&self.n.priority))
            {
                return t.clone();
            }
        } else {
            self.append_to(p, &input);
        }
        old.clone()
    }

    /// `Task.runTask(self)`.
    fn run_task(&self, t: &Obj<'r>) -> Obj<'r> {
        let msg = if self.is_waiting_with_packet(t) {
            let msg = t.getitem(&self.n.input);
            t.set(&self.n.input, &msg.getitem(&self.n.link));
            if t.getitem(&self.n.input).is_none() {
                self.set_state(t, false, false, false); // self.running()
            } else {
                self.set_state(t, true, false, false); // self.packetPending()
            }
            msg
        } else {
            self.none.clone()
        };
        let handle = t.getitem(&self.n.handle);
        self.call_fn(t, &msg, &handle)
    }

    /// `self.fn(pkt, r)`: the method of the task's class.
    fn call_fn(&self, t: &Obj<'r>, pkt: &Obj<'r>, r: &Obj<'r>) -> Obj<'r> {
        let class = t.getitem(&self.n.class);
        if class.is(&self.device_task) {
            self.device_fn(t, pkt, r)
        } else if class.is(&self.handler_task) {
            self.handler_fn(t, pkt, r)
        } else if class.is(&self.idle_task) {
            self.idle_fn(t, r)
        } else if class.is(&self.work_task) {
            self.work_fn(t, pkt, r)
        } else {
            panic!("NotImplementedError: Task.fn of {class}")
        }
    }

    /// `Task.waitTask(self)`.
    fn wait_task(&self, t: &Obj<'r>) -> Obj<'r> {
        t.set(&self.n.task_waiting, &self.true_);
        t.clone()
    }

    /// Adds one to a counter attribute of `taskWorkArea`.
    fn bump_counter(&self, name: &Obj<'r>) {
        self.wa.set(name, &(&self.wa.getitem(name) + &self.one));
    }

    /// `Task.hold(self)`.
    fn hold(&self, t: &Obj<'r>) -> Obj<'r> {
        self.bump_counter(&self.n.hold_count);
        t.set(&self.n.task_holding, &self.true_);
        t.getitem(&self.n.link)
    }

    /// `Task.release(self, i)`.
    fn release(&self, t: &Obj<'r>, i: i64) -> Obj<'r> {
        let other = self.findtcb(i);
        other.set(&self.n.task_holding, &self.false_);
        if other
            .getitem(&self.n.priority)
            .gt(&t.getitem(&self.n.priority))
        {
            other
        } else {
            t.clone()
        }
    }

    /// `Task.qpkt(self, pkt)`.
    fn qpkt(&self, t: &Obj<'r>, pkt: &Obj<'r>) -> Obj<'r> {
        let other = self.findtcb(pkt.getitem(&self.n.ident).int());
        self.bump_counter(&self.n.qpkt_count);
        pkt.set(&self.n.link, &self.none);
        pkt.set(&self.n.ident, &t.getitem(&self.n.ident));
        self.add_packet(&other, pkt, t)
    }

    /// `Task.findtcb(self, id)`.
    fn findtcb(&self, id: i64) -> Obj<'r> {
        let t = self.wa.getitem(&self.n.task_tab).at(id as isize);
        if t.is_none() {
            panic!("Exception: Bad task id {id}");
        }
        t
    }

    // --- The four kinds of task -----------------------------------------------------------

    /// `DeviceTask.fn`.
    fn device_fn(&self, t: &Obj<'r>, pkt: &Obj<'r>, d: &Obj<'r>) -> Obj<'r> {
        if pkt.is_none() {
            let pkt = d.getitem(&self.n.pending);
            if pkt.is_none() {
                self.wait_task(t)
            } else {
                d.set(&self.n.pending, &self.none);
                self.qpkt(t, &pkt)
            }
        } else {
            d.set(&self.n.pending, pkt);
            self.hold(t)
        }
    }

    /// `HandlerTask.fn`.
    fn handler_fn(&self, t: &Obj<'r>, pkt: &Obj<'r>, h: &Obj<'r>) -> Obj<'r> {
        if !pkt.is_none() {
            let queue = if pkt.getitem(&self.n.kind) == self.k_work {
                &self.n.work_in // h.workInAdd(pkt)
            } else {
                &self.n.device_in // h.deviceInAdd(pkt)
            };
            h.set(queue, &self.append_to(pkt, &h.getitem(queue)));
        }
        let work = h.getitem(&self.n.work_in);
        if work.is_none() {
            return self.wait_task(t);
        }
        let count = work.getitem(&self.n.datum);
        if !count.lt(&self.bufsize) {
            h.set(&self.n.work_in, &work.getitem(&self.n.link));
            return self.qpkt(t, &work);
        }
        let dev = h.getitem(&self.n.device_in);
        if dev.is_none() {
            return self.wait_task(t);
        }
        h.set(&self.n.device_in, &dev.getitem(&self.n.link));
        dev.set(
            &self.n.datum,
            &work.getitem(&self.n.data).at(count.int() as isize),
        );
        work.set(&self.n.datum, &(&count + &self.one));
        self.qpkt(t, &dev)
    }

    /// `IdleTask.fn`.
    fn idle_fn(&self, t: &Obj<'r>, i: &Obj<'r>) -> Obj<'r> {
        i.set(&self.n.count, &(&i.getitem(&self.n.count) - &self.one));
        if i.getitem(&self.n.count) == self.zero {
            return self.hold(t);
        }
        let control = i.getitem(&self.n.control);
        if (&control & &self.one) == self.zero {
            i.set(&self.n.control, &control.floordiv(&self.two));
            self.release(t, I_DEVA)
        } else {
            i.set(
                &self.n.control,
                &(&control.floordiv(&self.two) ^ &self.xor_mask),
            );
            self.release(t, I_DEVB)
        }
    }

    /// `WorkTask.fn`.
    fn work_fn(&self, t: &Obj<'r>, pkt: &Obj<'r>, w: &Obj<'r>) -> Obj<'r> {
        if pkt.is_none() {
            return self.wait_task(t);
        }
        let dest = if w.getitem(&self.n.destination) == self.i_handlera {
            &self.i_handlerb
        } else {
            &self.i_handlera
        };
        w.set(&self.n.destination, dest);
        pkt.set(&self.n.ident, dest);
        pkt.set(&self.n.datum, &self.zero);
        for i in 0..BUFSIZE {
            w.set(&self.n.count, &(&w.getitem(&self.n.count) + &self.one));
            if w.getitem(&self.n.count).gt(&self.twenty_six) {
                w.set(&self.n.count, &self.one);
            }
            let letter = &(&self.letter_a + &w.getitem(&self.n.count)) - &self.one;
            pkt.getitem(&self.n.data).set_at(i as isize, &letter);
        }
        self.qpkt(t, pkt)
    }

    // --- The scheduler --------------------------------------------------------------------

    /// `schedule()`.
    fn schedule(&self) {
        let mut t = self.wa.getitem(&self.n.task_list);
        while !t.is_none() {
            t = if self.is_task_holding_or_waiting(&t) {
                t.getitem(&self.n.link)
            } else {
                self.run_task(&t)
            };
        }
    }

    /// One iteration of `Richards.run`; returns `(holdCount, qpktCount)`.
    fn iteration(&self) -> (i64, i64) {
        let rt = self.rt;
        self.wa.set(&self.n.hold_count, &self.zero);
        self.wa.set(&self.n.qpkt_count, &self.zero);

        // IdleTask(I_IDLE, 1, 10000, TaskState().running(), IdleTaskRec())
        let rec = rt.dict();
        rec.set(&self.n.control, &self.one);
        rec.set(&self.n.count, &rt.int(10000));
        let state = self.task_state(false, false, false);
        self.task(&self.idle_task, I_IDLE, 0, &self.none, &state, &rec);

        // wkq = Packet(None, 0, K_WORK); wkq = Packet(wkq, 0, K_WORK)
        let wkq = self.packet(&self.none, 0, K_WORK);
        let wkq = self.packet(&wkq, 0, K_WORK);
        let rec = rt.dict();
        rec.set(&self.n.destination, &self.i_handlera);
        rec.set(&self.n.count, &self.zero);
        let state = self.task_state(true, true, false); // waitingWithPacket()
        self.task(&self.work_task, I_WORK, 1000, &wkq, &state, &rec);

        for (ident, priority, device) in [(I_HANDLERA, 2000, I_DEVA), (I_HANDLERB, 3000, I_DEVB)] {
            let wkq = self.packet(&self.none, device, K_DEV);
            let wkq = self.packet(&wkq, device, K_DEV);
            let wkq = self.packet(&wkq, device, K_DEV);
            let rec = rt.dict();
            rec.set(&self.n.work_in, &self.none);
            rec.set(&self.n.device_in, &self.none);
            let state = self.task_state(true, true, false); // waitingWithPacket()
            self.task(&self.handler_task, ident, priority, &wkq, &state, &rec);
        }

        for (ident, priority) in [(I_DEVA, 4000), (I_DEVB, 5000)] {
            let rec = rt.dict();
            rec.set(&self.n.pending, &self.none);
            let state = self.task_state(false, true, false); // waiting()
            self.task(&self.device_task, ident, priority, &self.none, &state, &rec);
        }

        self.schedule();
        (
            self.wa.getitem(&self.n.hold_count).int(),
            self.wa.getitem(&self.n.qpkt_count).int(),
        )
    }
}

/// `Richards().run(loops)`, checking the counters of every iteration.
pub(crate) fn run<'r>(rt: &'r Runtime<'r>, loops: usize) -> Result<String, String> {
    let richards = Richards::new(rt);
    for i in 0..loops.max(1) {
        let (hold, qpkt) = richards.iteration();
        if (hold, qpkt) != (EXPECTED_HOLD_COUNT, EXPECTED_QPKT_COUNT) {
            return Err(format!(
                "richards: iteration {i} ended with holdCount {hold}, qpktCount {qpkt}; expected {EXPECTED_HOLD_COUNT}, {EXPECTED_QPKT_COUNT}"
            ));
        }
    }
    Ok(format!(
        "holdCount {EXPECTED_HOLD_COUNT}, qpktCount {EXPECTED_QPKT_COUNT} ×{}",
        loops.max(1)
    ))
}
