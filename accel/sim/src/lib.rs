//! Functional and cycle-level simulator of the Tessera accelerator.
//!
//! Functional semantics are bit-exact (see `docs/accel-isa.md`); timing comes
//! from an event-driven model of the dispatcher, the three in-order queues, the
//! dependency-token FIFOs and per-instruction unit costs. Every loop is bounded
//! by the stream length or by instruction field widths, and every malformed
//! input ends in a [`SimError`] naming the instruction, never a panic or a hang.

pub mod exec;
pub mod report;

pub use exec::Actions;
pub use report::{chrome_trace, Report, TraceEvent, Track, UnitStats};

use exec::{Cost, Machine};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use tessera_accel_isa::{HwConfig, Op, Queue, Role, Stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimErrorKind {
    /// The stream or its inputs do not fit the configuration.
    Setup,
    /// An instruction is invalid or touches memory outside its range.
    Invalid,
    /// An instruction pops a token that no remaining instruction pushes.
    TokenUnderflow,
    /// No queue can make progress.
    Deadlock,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    pub kind: SimErrorKind,
    pub index: Option<usize>,
    pub msg: String,
}

impl SimError {
    fn setup(msg: impl Into<String>) -> SimError {
        SimError {
            kind: SimErrorKind::Setup,
            index: None,
            msg: msg.into(),
        }
    }
    fn at(kind: SimErrorKind, index: usize, msg: impl Into<String>) -> SimError {
        SimError {
            kind,
            index: Some(index),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "instruction {i}: {}", self.msg),
            None => write!(f, "{}", self.msg),
        }
    }
}

impl std::error::Error for SimError {}

/// What a run leaves behind besides the report.
#[derive(Clone, Debug)]
pub struct SimOutput {
    /// The final DRAM contents (`stream.dram_size` bytes).
    pub dram: Vec<u8>,
    /// The bytes of every `output` buffer, by name.
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// Executed instructions, for [`chrome_trace`].
    pub trace: Vec<TraceEvent>,
}

pub struct Simulator {
    cfg: HwConfig,
}

/// A token FIFO between two neighbouring queues; entries are the cycles at
/// which each token becomes visible.
#[derive(Default)]
struct Fifo {
    tokens: VecDeque<u64>,
    /// A producer blocked on a full FIFO cannot start before the pop that freed it.
    freed_at: u64,
}

struct QueueState {
    /// (instruction index, dispatch cycle) of instructions waiting for the unit.
    waiting: VecDeque<(usize, u64)>,
    unit_free_at: u64,
    /// When the queue was full, the cycle its head left (the dispatcher waits for it).
    freed_at: u64,
}

fn fifo_index(from: Queue, to: Queue) -> usize {
    match (from, to) {
        (Queue::Load, Queue::Compute) => 0,
        (Queue::Compute, Queue::Load) => 1,
        (Queue::Compute, Queue::Store) => 2,
        _ => 3, // store -> compute
    }
}

enum Ready {
    /// Blocked on an empty FIFO fed by this queue.
    NoToken(Queue),
    /// Blocked on a full FIFO towards this queue.
    Full(Queue),
}

impl Simulator {
    pub fn new(cfg: HwConfig) -> Simulator {
        Simulator { cfg }
    }

    pub fn config(&self) -> &HwConfig {
        &self.cfg
    }

    fn check_stream(&self, s: &Stream) -> Result<(), SimError> {
        let cfg = &self.cfg;
        if s.config_hash != 0 && s.config_hash != cfg.hash() {
            return Err(SimError::setup(format!(
                "stream was compiled for config hash {:#018x}, but '{}' has {:#018x}",
                s.config_hash,
                cfg.name,
                cfg.hash()
            )));
        }
        if s.dram_size > cfg.dram_bytes {
            return Err(SimError::setup(format!(
                "stream needs {} bytes of DRAM; '{}' has {}",
                s.dram_size, cfg.name, cfg.dram_bytes
            )));
        }
        let image_end = s.image_base.checked_add(s.image.len() as u64);
        if image_end.is_none_or(|e| e > s.dram_size) {
            return Err(SimError::setup("the DRAM image does not fit in dram_size"));
        }
        for b in &s.buffers {
            if b.addr
                .checked_add(b.bytes())
                .is_none_or(|e| e > s.dram_size)
            {
                return Err(SimError::setup(format!(
                    "buffer '{}' does not fit in dram_size",
                    b.name
                )));
            }
        }
        let n = s.insns.len();
        if n == 0 {
            return Err(SimError::setup("empty stream"));
        }
        for (i, insn) in s.insns.iter().enumerate() {
            insn.validate()
                .map_err(|m| SimError::at(SimErrorKind::Invalid, i, m))?;
            if matches!(insn.op, Op::Finish(_)) && i + 1 != n {
                return Err(SimError::at(
                    SimErrorKind::Invalid,
                    i,
                    "finish is not the last instruction",
                ));
            }
        }
        if !matches!(s.insns[n - 1].op, Op::Finish(_)) {
            return Err(SimError::at(
                SimErrorKind::Invalid,
                n - 1,
                "the stream does not end with finish",
            ));
        }
        Ok(())
    }

    /// Runs `stream` with `inputs` (bytes per `input` buffer name) placed in DRAM.
    pub fn run(
        &self,
        stream: &Stream,
        inputs: &BTreeMap<String, Vec<u8>>,
    ) -> Result<(SimOutput, Report), SimError> {
        self.check_stream(stream)?;
        let cfg = &self.cfg;
        let mut m = Machine {
            dram: vec![0; stream.dram_size as usize],
            sp: vec![0; cfg.sp_bytes as usize],
            acc: vec![0; cfg.acc_words() as usize],
            store_zero_point: 0,
            gemm_a_zero_point: 0,
        };
        let base = stream.image_base as usize;
        m.dram[base..base + stream.image.len()].copy_from_slice(&stream.image);
        for (name, bytes) in inputs {
            let b = stream
                .buffer(name)
                .filter(|b| b.role == Role::Input)
                .ok_or_else(|| {
                    SimError::setup(format!("the stream has no input buffer '{name}'"))
                })?;
            if bytes.len() as u64 != b.bytes() {
                return Err(SimError::setup(format!(
                    "input '{name}': {} bytes given, {} expected",
                    bytes.len(),
                    b.bytes()
                )));
            }
            m.dram[b.addr as usize..b.addr as usize + bytes.len()].copy_from_slice(bytes);
        }
        if let Some(b) = stream
            .buffers
            .iter()
            .find(|b| b.role == Role::Input && !inputs.contains_key(&b.name))
        {
            return Err(SimError::setup(format!("input '{}' was not given", b.name)));
        }

        let (report, trace) = self.schedule(stream, &mut m)?;
        let outputs = stream
            .buffers
            .iter()
            .filter(|b| b.role == Role::Output)
            .map(|b| {
                (
                    b.name.clone(),
                    m.dram[b.addr as usize..(b.addr + b.bytes()) as usize].to_vec(),
                )
            })
            .collect();
        Ok((
            SimOutput {
                dram: m.dram,
                outputs,
                trace,
            },
            report,
        ))
    }

    fn schedule(&self, s: &Stream, m: &mut Machine) -> Result<(Report, Vec<TraceEvent>), SimError> {
        let cfg = &self.cfg;
        let n = s.insns.len();
        let mut queues: Vec<QueueState> = (0..3)
            .map(|_| QueueState {
                waiting: VecDeque::new(),
                unit_free_at: 0,
                freed_at: 0,
            })
            .collect();
        let mut fifos: Vec<Fifo> = (0..4).map(|_| Fifo::default()).collect();
        let depth = cfg.insn_queue_depth as usize;
        let tdepth = cfg.token_queue_depth as usize;
        let mut next_dispatch = 0usize;
        let mut last_dispatch: Option<u64> = None;
        let mut report = Report {
            config: cfg.name.clone(),
            ..Default::default()
        };
        let mut trace = Vec::with_capacity(n);
        let mut done = vec![false; n];

        // Each iteration starts exactly one instruction or returns, so the loop
        // runs at most n times.
        loop {
            // The dispatcher issues one instruction per cycle, in stream order,
            // and stalls while the target queue is full.
            while next_dispatch < n {
                let q = &mut queues[s.insns[next_dispatch].queue() as usize];
                if q.waiting.len() >= depth {
                    break;
                }
                let t = last_dispatch.map_or(0, |d| (d + 1).max(q.freed_at));
                q.waiting.push_back((next_dispatch, t));
                last_dispatch = Some(t);
                next_dispatch += 1;
            }

            let mut best: Option<(u64, Queue)> = None;
            let mut blocked: Vec<(usize, Queue, Ready)> = vec![];
            for q in Queue::ALL {
                let Some(&(idx, disp)) = queues[q as usize].waiting.front() else {
                    continue;
                };
                let insn = &s.insns[idx];
                let mut t = queues[q as usize].unit_free_at.max(disp + 1);
                let mut state = None;
                let pops = [
                    (insn.deps.pop_prev, q.prev()),
                    (insn.deps.pop_next, q.next()),
                ];
                for (on, nb) in pops {
                    if let (true, Some(nb)) = (on, nb) {
                        match fifos[fifo_index(nb, q)].tokens.front() {
                            Some(&tt) => t = t.max(tt),
                            None => state = Some(Ready::NoToken(nb)),
                        }
                    }
                }
                let pushes = [
                    (insn.deps.push_prev, q.prev()),
                    (insn.deps.push_next, q.next()),
                ];
                for (on, nb) in pushes {
                    if let (true, Some(nb)) = (on, nb) {
                        let f = &fifos[fifo_index(q, nb)];
                        if f.tokens.len() >= tdepth {
                            state = state.or(Some(Ready::Full(nb)));
                        } else {
                            t = t.max(f.freed_at);
                        }
                    }
                }
                match state {
                    Some(r) => blocked.push((idx, q, r)),
                    None => {
                        if best.is_none_or(|(bt, _)| t < bt) {
                            best = Some((t, q));
                        }
                    }
                }
            }

            let Some((start, q)) = best else {
                if next_dispatch == n && queues.iter().all(|q| q.waiting.is_empty()) {
                    break;
                }
                return Err(self.stuck(s, &done, blocked, next_dispatch));
            };

            let qs = &mut queues[q as usize];
            let was_full = qs.waiting.len() >= depth;
            let (idx, disp) = qs.waiting.pop_front().unwrap_or((0, 0));
            if was_full {
                qs.freed_at = start;
            }
            let stall = start - qs.unit_free_at.max(disp + 1);
            done[idx] = true;
            let insn = s.insns[idx];
            for (on, nb) in [
                (insn.deps.pop_prev, q.prev()),
                (insn.deps.pop_next, q.next()),
            ] {
                if let (true, Some(nb)) = (on, nb) {
                    let f = &mut fifos[fifo_index(nb, q)];
                    if f.tokens.len() >= tdepth {
                        f.freed_at = start;
                    }
                    f.tokens.pop_front();
                }
            }
            let (cost, track) = self
                .execute(m, &insn.op)
                .map_err(|msg| SimError::at(SimErrorKind::Invalid, idx, msg))?;
            let end = start + cost.cycles;
            for (on, nb) in [
                (insn.deps.push_prev, q.prev()),
                (insn.deps.push_next, q.next()),
            ] {
                if let (true, Some(nb)) = (on, nb) {
                    fifos[fifo_index(q, nb)].tokens.push_back(end);
                }
            }
            queues[q as usize].unit_free_at = end;

            let unit = match q {
                Queue::Load => &mut report.load,
                Queue::Compute => &mut report.compute,
                Queue::Store => &mut report.store,
            };
            unit.insns += 1;
            unit.busy_cycles += cost.cycles;
            unit.stall_cycles += stall;
            match track {
                Track::Gemm => report.gemm_busy_cycles += cost.cycles,
                Track::Vector => report.vec_busy_cycles += cost.cycles,
                _ => {}
            }
            report.bank_conflict_cycles += cost.conflict;
            report.actions.add(&cost.actions);
            let name = insn.op.def().mnemonic;
            *report.insn_counts.entry(name.to_string()).or_insert(0) += 1;
            report.total_cycles = report.total_cycles.max(end);
            trace.push(TraceEvent {
                index: idx,
                name,
                track,
                start,
                cycles: cost.cycles,
            });
        }
        report.unconsumed_tokens = fifos.iter().map(|f| f.tokens.len() as u64).sum();
        report.finish(cfg);
        Ok((report, trace))
    }

    fn execute(&self, m: &mut Machine, op: &Op) -> Result<(Cost, Track), String> {
        let cfg = &self.cfg;
        Ok(match op {
            Op::Load(l) => (m.load(cfg, l)?, Track::Load),
            Op::Store(st) => (m.store(cfg, st)?, Track::Store),
            Op::Gemm(g) => (m.gemm(cfg, g)?, Track::Gemm),
            Op::Vector(v) => (m.vector(cfg, v)?, Track::Vector),
            Op::Config(c) => {
                m.config(c);
                (
                    Cost {
                        cycles: 1,
                        ..Default::default()
                    },
                    Track::Control,
                )
            }
            Op::Finish(_) => (
                Cost {
                    cycles: 1,
                    ..Default::default()
                },
                Track::Control,
            ),
        })
    }

    /// Explains why nothing can start: a pop no remaining instruction can feed
    /// is a token underflow; otherwise the queues wait on each other (deadlock).
    fn stuck(
        &self,
        s: &Stream,
        done: &[bool],
        blocked: Vec<(usize, Queue, Ready)>,
        next_dispatch: usize,
    ) -> SimError {
        let mut waits = vec![];
        for (idx, q, why) in &blocked {
            if let Ready::NoToken(from) = why {
                let feeds = |j: usize| {
                    let i = &s.insns[j];
                    !done[j]
                        && i.queue() == *from
                        && ((from.next() == Some(*q) && i.deps.push_next)
                            || (from.prev() == Some(*q) && i.deps.push_prev))
                };
                if !(0..s.insns.len()).any(feeds) {
                    return SimError::at(
                        SimErrorKind::TokenUnderflow,
                        *idx,
                        format!(
                            "token underflow: {} ({} queue) pops a token from the {} queue, and no remaining instruction there pushes one",
                            s.insns[*idx].op.def().mnemonic,
                            q.name(),
                            from.name()
                        ),
                    );
                }
            }
            let what = match why {
                Ready::NoToken(from) => format!("waits for a token from the {} queue", from.name()),
                Ready::Full(to) => format!(
                    "waits for space in the token FIFO to the {} queue",
                    to.name()
                ),
            };
            waits.push(format!("instruction {idx} ({} queue) {what}", q.name()));
        }
        if next_dispatch < s.insns.len() {
            waits.push(format!(
                "the dispatcher holds instruction {next_dispatch} because the {} queue is full",
                s.insns[next_dispatch].queue().name()
            ));
        }
        let first = blocked.iter().map(|b| b.0).min().unwrap_or(next_dispatch);
        SimError::at(
            SimErrorKind::Deadlock,
            first,
            format!("deadlock: {}", waits.join("; ")),
        )
    }
}
