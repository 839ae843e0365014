//! `Streams.Read` served as plain HTTP/2, without tonic's codec.
//!
//! A 1,000-event read is ~330 KB of replies. Through tonic each reply was
//! an item of its own: encoded into a scratch buffer, copied into the
//! call's buffer, framed. Here the request is decoded by hand and the
//! replies go out as they come: pages that forward stream reads framed on
//! the blocking thread ([`ReadReply::Framed`]) are handed to the connection
//! without another copy, and single replies (subscriptions, notices) are
//! framed straight into the outgoing buffer. What goes on the wire is the
//! same: `application/grpc`, length-prefixed `ReadResp` messages, then
//! `grpc-status` (and `grpc-message`, `grpc-status-details-bin`) trailers,
//! or a trailers-only reply when the read is refused before it starts.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http;
use bytes::Bytes;
use http_body::Frame;
use prost::Message;
use tokio_stream::Stream;
use tonic::Status;

use super::read_reply::{ReadReply, GRPC_PREFIX_BYTES};
use super::streams::StreamsService;
use crate::bridge::Batched;
use crate::proto::event_store::client::streams::ReadReq;

/// Replies are gathered up to this many bytes before they go to the
/// connection, and framed pages are handed over in pieces of this size:
/// small enough that the client decodes one piece while the next is
/// written, large enough to keep `writev`s few.
const REPLY_CHUNK_BYTES: usize = 32 * 1024;

/// Answers one `Streams.Read` call.
/// `request_bytes_max` bounds the request (filters can be long).
pub async fn serve(
    service: Arc<StreamsService>,
    request: axum::extract::Request,
    request_bytes_max: usize,
) -> axum::response::Response {
    let read = match decode_request(request, request_bytes_max).await {
        Ok(read) => read,
        Err(status) => return status.into_http(),
    };
    match service.start_read(tonic::Request::new(read)).await {
        Ok(replies) => {
            let mut response = axum::response::Response::new(Body::new(ReplyBody::new(replies.into_inner())));
            response
                .headers_mut()
                .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
            response
        }
        Err(status) => status.into_http(),
    }
}

/// The request body: exactly one uncompressed, length-prefixed `ReadReq`.
async fn decode_request(request: axum::extract::Request, request_bytes_max: usize) -> Result<ReadReq, Status> {
    let body = axum::body::to_bytes(request.into_body(), request_bytes_max).await.map_err(|error| {
        Status::invalid_argument(format!("cannot read the request (at most {request_bytes_max} bytes): {error}"))
    })?;
    let Some((prefix, message)) = body.split_at_checked(GRPC_PREFIX_BYTES) else {
        return Err(Status::invalid_argument("the request holds no complete gRPC message"));
    };
    if prefix[0] != 0 {
        return Err(Status::unimplemented("compressed requests are not supported"));
    }
    let length = u32::from_be_bytes(prefix[1..].try_into().expect("4 bytes")) as usize;
    if length != message.len() {
        return Err(Status::invalid_argument(format!(
            "the request must be one message: its prefix says {length} bytes, {} followed",
            message.len()
        )));
    }
    ReadReq::decode(message).map_err(|error| Status::invalid_argument(format!("invalid ReadReq: {error}")))
}

/// The reply stream as an HTTP body: data frames, then trailers.
struct ReplyBody {
    replies: Batched<Result<ReadReply, Status>>,
    /// Single replies framed since the last data frame.
    buffer: Vec<u8>,
    /// The rest of a framed page, handed over a chunk at a time.
    page: Bytes,
    /// Set once the replies ended: the call's status, sent after the data.
    trailers: Option<http::HeaderMap>,
    done: bool,
}

impl ReplyBody {
    fn new(replies: Batched<Result<ReadReply, Status>>) -> Self {
        Self { replies, buffer: Vec::new(), page: Bytes::new(), trailers: None, done: false }
    }

    fn take_buffer(&mut self) -> Frame<Bytes> {
        Frame::data(Bytes::from(std::mem::take(&mut self.buffer)))
    }

    fn take_page_chunk(&mut self) -> Frame<Bytes> {
        let chunk = self.page.split_to(self.page.len().min(REPLY_CHUNK_BYTES));
        Frame::data(chunk)
    }
}

fn status_trailers(status: &Status) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    if let Err(unencodable) = status.add_header(&mut trailers) {
        trailers.clear();
        let fallback = Status::internal(format!("a status that cannot be sent: {}", unencodable.message()));
        fallback.add_header(&mut trailers).expect("a plain message encodes");
    }
    trailers
}

impl http_body::Body for ReplyBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        loop {
            // Order on the wire: gathered replies, then a framed page, then
            // (once the replies ended) the trailers.
            if !this.buffer.is_empty() && (this.buffer.len() >= REPLY_CHUNK_BYTES || this.trailers.is_some()) {
                return Poll::Ready(Some(Ok(this.take_buffer())));
            }
            if !this.page.is_empty() {
                if !this.buffer.is_empty() {
                    return Poll::Ready(Some(Ok(this.take_buffer())));
                }
                return Poll::Ready(Some(Ok(this.take_page_chunk())));
            }
            if let Some(trailers) = this.trailers.take() {
                this.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.replies).poll_next(context) {
                Poll::Ready(Some(Ok(ReadReply::Framed(page)))) => this.page = page,
                Poll::Ready(Some(Ok(reply))) => reply.frame_into(&mut this.buffer),
                Poll::Ready(Some(Err(status))) => this.trailers = Some(status_trailers(&status)),
                Poll::Ready(None) => this.trailers = Some(status_trailers(&Status::ok(""))),
                Poll::Pending if !this.buffer.is_empty() => return Poll::Ready(Some(Ok(this.take_buffer()))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.buffer.is_empty() && self.page.is_empty()
    }
}
