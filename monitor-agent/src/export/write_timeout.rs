//! A connection's socket that gives up on a client that stops reading: a write (or flush)
//! that makes no progress for the timeout fails, which ends the connection and frees what it
//! held (its rendered page, its `--web.max-requests` permit). Without it, a client that asks
//! for `/metrics` and never reads keeps both for as long as it keeps the socket open.
use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

pub struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    /// Armed when a write first finds the socket full; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            stalled: None,
        }
    }

    /// Passes a write's outcome through, unless it has been pending for too long.
    fn progress<T>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if outcome.is_ready() {
            self.stalled = None;
            return outcome;
        }
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {timeout:?} (--web.write-timeout)"),
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progress(cx, outcome)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.progress(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_flush(cx);
        this.progress(cx, outcome)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let outcome = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.progress(cx, outcome)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt as _, AsyncWriteExt as _},
        time::Instant,
    };

    use super::*;

    /// A reader that never reads: once its buffer is full, a write fails after the timeout,
    /// not before.
    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_timeout() {
        let (_reader, writer) = tokio::io::duplex(64);
        let mut writer = WriteTimeout::new(writer, Duration::from_secs(5));
        writer.write_all(&[1; 64]).await.unwrap();
        let started = Instant::now();
        let err = writer.write_all(&[2; 64]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    /// A slow reader that keeps reading is never cut off, however long the whole takes:
    /// the timeout is for a stall, not for the response.
    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_served_to_the_end() {
        let (mut reader, writer) = tokio::io::duplex(64);
        let mut writer = WriteTimeout::new(writer, Duration::from_secs(5));
        let drain = tokio::spawn(async move {
            let (mut total, mut buf) = (0, [0; 16]);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return total,
                    Ok(read) => total += read,
                }
            }
        });
        let started = Instant::now();
        writer.write_all(&[3; 1024]).await.unwrap();
        writer.shutdown().await.unwrap();
        drop(writer);
        assert_eq!(drain.await.unwrap(), 1024);
        assert!(started.elapsed() > Duration::from_secs(30));
    }
}
