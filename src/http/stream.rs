//! A scrape's response, streamed: the render (on a blocking thread) hands
//! chunks to a [`Sender`], the response [`StreamBody`] gives them to hyper as
//! they come (HTTP/1.1 chunked transfer, HTTP/2 data frames), and between the
//! two a queue bounded in bytes: the render waits while the client has more
//! than that to read, so a response of any size costs a few chunks of memory.
//!
//! Two things bound that wait, so that a slow client holds up nothing else:
//! - a render holding a lock (a label cache, the exporter's counters) sends
//!   without waiting (`wait: false`): the chunks queue past the bound, and the
//!   next send without a lock waits for the queue to drain again;
//! - a render waits at most [`STALL_BUDGET`] in all. A client slower than that
//!   gets the rest of its response queued whole, as before streaming: the
//!   render then ends, freeing its scrape slot and the instances its snapshot
//!   holds (a process detached meanwhile is freed when its last scrape ends).
//!
//! A client that goes away drops the body: the queue is emptied at once, and
//! the render's next send (or its check between batches of a map read) sees
//! it and stops. gzip is streamed too ([`Gzip`]): each chunk is compressed as
//! it is sent.

use crate::metrics::encode::{Closed, Sink};
use bytes::Bytes;
use http_body::Frame;
use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Bytes of output the encoder gathers before sending them as one chunk.
pub const CHUNK_BYTES: usize = 128 * 1024;

/// Bytes queued for the client past which a render waits, until the client
/// has taken half of them (eight chunks: enough to keep a fast client's
/// socket busy while the next ones are made, and the render wakes once per
/// four chunks, not once per chunk, on a busy host where each wake-up may
/// wait for a core).
pub const QUEUE_BYTES: usize = 8 * CHUNK_BYTES;

/// The longest a render waits for its client in all, before queueing the
/// rest of the response whole. A client reading at loopback or LAN speed
/// waits well under it for a 1M-series response; a render waiting holds no
/// lock, only its scrape slot and its snapshot of the attached instances.
pub const STALL_BUDGET: Duration = Duration::from_secs(5);

/// compressed bytes gathered before they are sent on (about one text chunk's
/// worth: text compresses 10 to 15 times).
const GZIP_CHUNK_BYTES: usize = 16 * 1024;

struct Queue {
    state: Mutex<State>,
    /// Signalled when the client has taken the queue down to half its
    /// bound, or gone away.
    room: Condvar,
    /// The bound, in bytes.
    limit: usize,
    /// The body was dropped: the client went away (or the response ended).
    reader_gone: AtomicBool,
}

#[derive(Default)]
struct State {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    /// The render sent its last chunk.
    finished: bool,
    /// The render is gone (ended, or panicked before finishing).
    sender_gone: bool,
    /// The body's task, to wake when a chunk comes.
    waker: Option<Waker>,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A streamed response: the render's end ([`Sender`]) and hyper's ([`StreamBody`]).
pub fn channel(limit: usize, stall_budget: Duration) -> (Sender, StreamBody) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State::default()),
        room: Condvar::new(),
        limit,
        reader_gone: AtomicBool::new(false),
    });
    (
        Sender {
            queue: queue.clone(),
            budget: stall_budget,
            waited: Duration::ZERO,
        },
        StreamBody { queue },
    )
}

/// The render's end of a streamed response.
pub struct Sender {
    queue: Arc<Queue>,
    /// Waiting left before the rest is queued whole.
    budget: Duration,
    waited: Duration,
}

impl Sink for Sender {
    fn send(&mut self, chunk: &mut Vec<u8>, wait: bool) -> Result<(), Closed> {
        if self.closed() {
            chunk.clear();
            return Err(Closed);
        }
        let next = Vec::with_capacity(chunk.capacity());
        let bytes = Bytes::from(std::mem::replace(chunk, next));
        let mut state = self.queue.lock();
        state.queued += bytes.len();
        state.chunks.push_back(bytes);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        if !wait || state.queued <= self.queue.limit {
            return Ok(());
        }
        // Over the bound: wait until the client has taken half of it.
        while state.queued > self.queue.limit / 2 && !self.budget.is_zero() && !self.closed() {
            let started = Instant::now();
            let (next, _) = self
                .queue
                .room
                .wait_timeout(state, self.budget)
                .unwrap_or_else(|p| p.into_inner());
            state = next;
            let waited = started.elapsed();
            self.waited += waited;
            self.budget = self.budget.saturating_sub(waited);
            if self.budget.is_zero() {
                tracing::debug!(
                    "a scrape's client has not read its response for {:?}: queueing the rest",
                    self.waited
                );
            }
        }
        drop(state);
        if self.closed() {
            return Err(Closed);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Closed> {
        let mut state = self.queue.lock();
        state.finished = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
        drop(state);
        if self.closed() {
            return Err(Closed);
        }
        Ok(())
    }

    fn closed(&self) -> bool {
        self.queue.reader_gone.load(Ordering::Relaxed)
    }

    fn waited(&self) -> Duration {
        self.waited
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        state.sender_gone = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// hyper's end of a streamed response: the chunks as they come, then the
/// end; an error (the connection is cut) if the render ended without finishing.
pub struct StreamBody {
    queue: Arc<Queue>,
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let mut state = self.queue.lock();
        if let Some(chunk) = state.chunks.pop_front() {
            let was = state.queued;
            state.queued -= chunk.len();
            let half = self.queue.limit / 2;
            drop(state);
            if was > half && was - chunk.len() <= half {
                self.queue.room.notify_one();
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if state.finished {
            return Poll::Ready(None);
        }
        if state.sender_gone {
            return Poll::Ready(Some(Err(std::io::Error::other(
                "the scrape ended without finishing its response",
            ))));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        self.queue.reader_gone.store(true, Ordering::Relaxed);
        let chunks = std::mem::take(&mut self.queue.lock().chunks);
        self.queue.room.notify_all();
        drop(chunks);
    }
}

/// A sink compressing what it is sent with gzip, chunk by chunk, and sending
/// the compressed bytes on to another sink.
pub struct Gzip<S: Sink> {
    inner: S,
    gz: flate2::write::GzEncoder<Vec<u8>>,
}

impl<S: Sink> Gzip<S> {
    /// Compresses into `inner` (at the fast level, as before streaming).
    pub fn new(inner: S) -> Self {
        Gzip {
            inner,
            gz: flate2::write::GzEncoder::new(
                Vec::with_capacity(2 * GZIP_CHUNK_BYTES),
                flate2::Compression::fast(),
            ),
        }
    }
}

impl<S: Sink> Sink for Gzip<S> {
    fn send(&mut self, chunk: &mut Vec<u8>, wait: bool) -> Result<(), Closed> {
        if self.inner.closed() {
            chunk.clear();
            return Err(Closed);
        }
        // Writing into a Vec cannot fail.
        let _ = self.gz.write_all(chunk);
        chunk.clear();
        if self.gz.get_ref().len() >= GZIP_CHUNK_BYTES {
            // Only ever appended to: taking its bytes leaves the stream whole.
            self.inner.send(self.gz.get_mut(), wait)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Closed> {
        let _ = self.gz.try_finish();
        if !self.gz.get_ref().is_empty() {
            self.inner.send(self.gz.get_mut(), true)?;
        }
        self.inner.finish()
    }

    fn closed(&self) -> bool {
        self.inner.closed()
    }

    fn waited(&self) -> Duration {
        self.inner.waited()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;
    use std::task::Wake;

    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }

    /// Polls `body` once: a chunk, the end (None), or Pending (Some(None)).
    fn poll(body: &mut StreamBody) -> Option<Option<Result<Vec<u8>, String>>> {
        let waker = Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        match Pin::new(body).poll_frame(&mut cx) {
            Poll::Pending => Some(None),
            Poll::Ready(None) => None,
            Poll::Ready(Some(Ok(frame))) => Some(Some(Ok(frame.into_data().unwrap().to_vec()))),
            Poll::Ready(Some(Err(e))) => Some(Some(Err(e.to_string()))),
        }
    }

    #[test]
    fn chunks_arrive_in_order_then_the_end() {
        let (mut sender, mut body) = channel(1 << 20, Duration::from_secs(1));
        assert_eq!(poll(&mut body), Some(None), "nothing yet");
        sender.send(&mut b"ab".to_vec(), true).unwrap();
        sender.send(&mut b"c".to_vec(), false).unwrap();
        sender.finish().unwrap();
        drop(sender);
        assert_eq!(poll(&mut body), Some(Some(Ok(b"ab".to_vec()))));
        assert_eq!(poll(&mut body), Some(Some(Ok(b"c".to_vec()))));
        assert_eq!(poll(&mut body), None);
    }

    #[test]
    fn a_render_that_ends_without_finishing_cuts_the_response() {
        let (mut sender, mut body) = channel(1 << 20, Duration::from_secs(1));
        sender.send(&mut b"partial".to_vec(), true).unwrap();
        drop(sender);
        assert_eq!(poll(&mut body), Some(Some(Ok(b"partial".to_vec()))));
        assert!(matches!(poll(&mut body), Some(Some(Err(_)))));
    }

    #[test]
    fn a_full_queue_waits_for_the_reader_only_when_allowed_and_within_the_budget() {
        let (mut sender, mut body) = channel(4, Duration::from_millis(300));
        // Without waiting: queued past the bound at once.
        for _ in 0..3 {
            sender.send(&mut b"12345".to_vec(), false).unwrap();
        }
        assert_eq!(sender.waited(), Duration::ZERO);
        // Waiting: the reader takes the chunks on another thread, once the
        // last one is queued. The sender queues it and finds the queue over
        // its bound under one lock, so by then it waits (or is about to).
        let reader = std::thread::spawn(move || {
            while body.queue.lock().queued < 16 {
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut got = Vec::new();
            loop {
                match poll(&mut body) {
                    None => return got,
                    Some(None) => std::thread::sleep(Duration::from_millis(20)),
                    Some(Some(chunk)) => got.extend(chunk.unwrap()),
                }
            }
        });
        sender.send(&mut b"6".to_vec(), true).unwrap();
        assert!(sender.waited() > Duration::ZERO, "it waited for the reader");
        sender.finish().unwrap();
        drop(sender);
        assert_eq!(reader.join().unwrap(), b"1234512345123456");
        // A reader that never reads: the wait ends with the budget, and later
        // sends queue without waiting.
        // (Judged by the sender's own account of its waits, not by the
        // wall clock, which a loaded machine stretches.)
        let (mut sender, _body) = channel(4, Duration::from_millis(200));
        sender.send(&mut b"12345".to_vec(), true).unwrap();
        let mut spent = sender.waited();
        for _ in 0..10 {
            sender.send(&mut b"12345".to_vec(), true).unwrap();
            if spent < Duration::from_millis(200) {
                spent = sender.waited();
            } else {
                assert_eq!(sender.waited(), spent, "waited again past the budget");
            }
        }
        assert!(spent >= Duration::from_millis(200), "{spent:?}");
    }

    #[test]
    fn a_reader_that_goes_away_stops_the_render_and_frees_the_queue() {
        let (mut sender, body) = channel(4, Duration::from_secs(30));
        sender.send(&mut vec![0; 1000], false).unwrap();
        let waiting = std::thread::spawn(move || {
            let started = Instant::now();
            let sent = sender.send(&mut b"x".to_vec(), true);
            (sent, started.elapsed(), sender)
        });
        std::thread::sleep(Duration::from_millis(100));
        let queue = body.queue.clone();
        drop(body);
        let (sent, took, mut sender) = waiting.join().unwrap();
        assert_eq!(sent, Err(Closed));
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert!(queue.lock().chunks.is_empty(), "freed");
        assert!(sender.closed());
        assert_eq!(sender.send(&mut b"y".to_vec(), false), Err(Closed));
    }

    #[test]
    fn gzip_compresses_chunk_by_chunk_into_one_stream() {
        let (sender, mut body) = channel(1 << 30, Duration::from_secs(1));
        let mut gz = Gzip::new(sender);
        let mut plain = Vec::new();
        for i in 0..20_000 {
            let mut chunk = format!("series{{key=\"{i}\"}} {}\n", i * 7).into_bytes();
            plain.extend_from_slice(&chunk);
            gz.send(&mut chunk, true).unwrap();
        }
        gz.finish().unwrap();
        drop(gz);
        let (mut compressed, mut frames) = (Vec::new(), 0);
        while let Some(chunk) = poll(&mut body) {
            compressed.extend(chunk.unwrap().unwrap());
            frames += 1;
        }
        assert!(frames > 2, "sent as it went: {frames} frames");
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut out)
            .unwrap();
        assert_eq!(out, plain);
    }
}
