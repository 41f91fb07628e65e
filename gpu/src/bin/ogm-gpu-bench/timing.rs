//! Timings with CUDA events: every iteration is bracketed by its own pair of events on the
//! stream, so restoring the gradients between iterations (the modulation is not idempotent)
//! and flushing the L2 cache (every iteration starts cold, so no kernel reads its input from a
//! cache the restore just filled) stay outside the measured time, and the host never has to
//! wait inside the loop.

use std::time::Instant;

use cust::event::{Event, EventFlags, EventStatus};
use cust::memory::{AsyncCopyDestination, DeviceBuffer};
use ogm_core::{Mode, Schedule};
use ogm_gpu::cuda::{Gpu, Logits, Sgd};
use ogm_gpu::{GpuError, SgdConfig};

use crate::agree::ALPHA;
use crate::workload::Workload;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Median and mean of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// Median.
    pub median_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

fn summarise(mut ms: Vec<f64>) -> Summary {
    ms.sort_by(f64::total_cmp);
    Summary {
        median_ms: ms[ms.len() / 2],
        mean_ms: ms.iter().sum::<f64>() / ms.len() as f64,
    }
}

/// What one loop measured: device time per iteration, host time spent queueing it, and how
/// often the device had already finished an iteration when the host returned from queueing it
/// (the sign of a hidden host synchronisation).
struct Loop {
    device: Summary,
    host_us: f64,
    finished_before_return: usize,
}

/// Bytes written between iterations to evict the L2 cache (50 MiB on an H100).
const FLUSH_BYTES: usize = 256 << 20;

/// Runs `body` `iters` times (after 3 warm-up rounds), each preceded by an L2 flush and
/// optionally by restoring the pristine gradients.
fn timed(
    gpu: &Gpu,
    w: &mut Workload,
    iters: usize,
    restore: bool,
    body: &mut dyn FnMut(&Gpu, &mut Workload) -> Result<(), GpuError>,
) -> Res<Loop> {
    let stream = gpu.stream();
    let mut flush = DeviceBuffer::from_slice(&vec![0u8; FLUSH_BYTES])?;
    for _ in 0..3 {
        if restore {
            // SAFETY: both buffers are live for the whole loop and of equal length.
            unsafe { w.d_work.async_copy_from(&w.d_grads, stream)? };
        }
        body(gpu, w)?;
    }
    let events: Vec<(Event, Event)> = (0..iters)
        .map(|_| {
            Ok((
                Event::new(EventFlags::DEFAULT)?,
                Event::new(EventFlags::DEFAULT)?,
            ))
        })
        .collect::<Result<_, cust::error::CudaError>>()?;
    gpu.synchronize()?;
    let mut host = 0.0;
    let mut finished = 0;
    for (start, end) in &events {
        if restore {
            // SAFETY: as above.
            unsafe { w.d_work.async_copy_from(&w.d_grads, stream)? };
        }
        // SAFETY: the flush buffer is live until after the final synchronisation.
        unsafe { flush.set_8_async(0, stream)? };
        start.record(stream)?;
        let t = Instant::now();
        body(gpu, w)?;
        host += t.elapsed().as_secs_f64();
        end.record(stream)?;
        if end.query()? == EventStatus::Ready {
            finished += 1;
        }
    }
    gpu.synchronize()?;
    let ms = events
        .iter()
        .map(|(s, e)| e.elapsed_time_f32(s).map(f64::from))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loop {
        device: summarise(ms),
        host_us: host / iters as f64 * 1e6,
        finished_before_return: finished,
    })
}

/// Device-to-device copy bandwidth (bytes read + written per second) of `bytes`-sized buffers.
pub fn copy_bandwidth(gpu: &Gpu, bytes: usize, iters: usize) -> Res<f64> {
    let n = bytes / 4;
    let src = DeviceBuffer::from_slice(&vec![1.0f32; n])?;
    let mut dst = DeviceBuffer::from_slice(&vec![0.0f32; n])?;
    let stream = gpu.stream();
    let mut ms = Vec::with_capacity(iters);
    for i in 0..iters + 2 {
        let (start, end) = (
            Event::new(EventFlags::DEFAULT)?,
            Event::new(EventFlags::DEFAULT)?,
        );
        start.record(stream)?;
        // SAFETY: both buffers are live and of equal length.
        unsafe { dst.async_copy_from(&src, stream)? };
        end.record(stream)?;
        end.synchronize()?;
        if i >= 2 {
            ms.push(f64::from(end.elapsed_time_f32(&start)?));
        }
    }
    Ok(2.0 * (n * 4) as f64 / (summarise(ms).median_ms * 1e-3))
}

/// The figures of one class count.
pub struct Times {
    step: Summary,
    step_sgd: Summary,
    scores_us: f64,
    balance_us: f64,
    stats_us: f64,
    modulate_us: f64,
    sgd_us: f64,
    stats_gbps: f64,
    modulate_gbps: f64,
    modulate_of_copy: f64,
    sgd_gbps: f64,
    host_enqueue_us: f64,
    finished_before_return: usize,
    iters: usize,
}

impl Times {
    /// The figures as a JSON object (for `BENCH_JSON`).
    pub fn json(&self) -> String {
        format!(
            concat!(
                "{{\"step_ms\":{:.4},\"step_mean_ms\":{:.4},\"step_sgd_ms\":{:.4},",
                "\"scores_us\":{:.2},\"balance_us\":{:.2},\"stats_us\":{:.2},",
                "\"modulate_us\":{:.2},\"sgd_us\":{:.2},\"stats_gbps\":{:.1},",
                "\"modulate_gbps\":{:.1},\"modulate_of_copy\":{:.3},\"sgd_gbps\":{:.1},",
                "\"host_enqueue_us\":{:.2},\"finished_before_return\":{},\"iters\":{}}}"
            ),
            self.step.median_ms,
            self.step.mean_ms,
            self.step_sgd.median_ms,
            self.scores_us,
            self.balance_us,
            self.stats_us,
            self.modulate_us,
            self.sgd_us,
            self.stats_gbps,
            self.modulate_gbps,
            self.modulate_of_copy,
            self.sgd_gbps,
            self.host_enqueue_us,
            self.finished_before_return,
            self.iters
        )
    }
}

/// Times the step, the step with SGD, and each kernel alone; prints and returns the figures.
pub fn run(gpu: &Gpu, w: &mut Workload, iters: usize, copy_bps: f64) -> Res<Times> {
    let schedule = Schedule::official(Mode::OgmGe, ALPHA)?;
    let mut sgd = Sgd::new(gpu, w.arena.len, SgdConfig::OFFICIAL)?;
    let mut d_params = DeviceBuffer::from_slice(&w.params)?;

    let mut step = |gpu: &Gpu, w: &mut Workload| -> Result<(), GpuError> {
        let logits = Logits {
            audio: &w.d_logits_a,
            visual: &w.d_logits_v,
            labels: &w.d_labels,
            classes: w.classes,
        };
        w.step
            .enqueue(gpu, &logits, &mut w.d_work, &schedule, 0, w.key)?;
        Ok(())
    };
    let full = timed(gpu, w, iters, true, &mut step)?;
    let full_sgd = timed(gpu, w, iters, true, &mut |gpu, w| {
        step(gpu, w)?;
        sgd.step(gpu, &mut d_params, &w.d_work)
    })?;
    let scores = timed(gpu, w, iters, false, &mut |gpu, w| {
        let logits = Logits {
            audio: &w.d_logits_a,
            visual: &w.d_logits_v,
            labels: &w.d_labels,
            classes: w.classes,
        };
        w.step.scores(gpu, &logits)
    })?;
    let balance = timed(gpu, w, iters, false, &mut |gpu, w| {
        w.step.balance(gpu, ALPHA, true)
    })?;
    let stats = timed(gpu, w, iters, false, &mut |gpu, w| {
        w.step.tensor_stats(gpu, &w.d_grads)
    })?;
    let modulate = timed(gpu, w, iters, true, &mut |gpu, w| {
        w.step.modulate(gpu, &mut w.d_work, Mode::OgmGe, w.key)
    })?;
    let sgd_only = timed(gpu, w, iters, false, &mut |gpu, w| {
        sgd.step(gpu, &mut d_params, &w.d_grads)
    })?;
    w.step.take_status(gpu)?;

    let n = w.list.total_values() as f64;
    let us = |l: &Loop| l.device.median_ms * 1e3;
    let gbps = |bytes: f64, l: &Loop| bytes / (l.device.median_ms * 1e-3) / 1e9;
    let t = Times {
        step: full.device,
        step_sgd: full_sgd.device,
        scores_us: us(&scores),
        balance_us: us(&balance),
        stats_us: us(&stats),
        modulate_us: us(&modulate),
        sgd_us: us(&sgd_only),
        stats_gbps: gbps(4.0 * n, &stats),
        modulate_gbps: gbps(8.0 * n, &modulate),
        modulate_of_copy: gbps(8.0 * n, &modulate) * 1e9 / copy_bps,
        sgd_gbps: gbps(20.0 * w.arena.len as f64, &sgd_only),
        host_enqueue_us: full.host_us,
        finished_before_return: full.finished_before_return + full_sgd.finished_before_return,
        iters,
    };
    println!(
        "time   modulation step (scores, ratio, coefficients, std, scale, noise; cold L2): {:.3} ms median, {:.3} ms mean",
        t.step.median_ms, t.step.mean_ms
    );
    println!(
        "time   modulation step + SGD update: {:.3} ms median",
        t.step_sgd.median_ms
    );
    println!(
        "time   kernels alone (median): scores {:.1} us, balance {:.1} us, std {:.1} us ({:.0} GB/s), modulate {:.1} us ({:.0} GB/s), SGD {:.1} us ({:.0} GB/s)",
        t.scores_us, t.balance_us, t.stats_us, t.stats_gbps, t.modulate_us, t.modulate_gbps, t.sgd_us, t.sgd_gbps
    );
    println!(
        "bandw  modulation kernel: {:.0} GB/s effective (8 bytes per value) = {:.0}% of the copy bandwidth (target 70%)",
        t.modulate_gbps,
        100.0 * t.modulate_of_copy
    );
    println!(
        "host   {:.1} us to queue a step; the device had finished {} of {} steps when the host returned from queueing them (0: no host synchronisation inside the step)",
        t.host_enqueue_us,
        t.finished_before_return,
        2 * iters
    );
    Ok(t)
}
