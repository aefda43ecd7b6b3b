//! Sends a request (`vapi_edge_core::outbound`: a dashboard notification, a
//! forward to the upstream, a read of Vapi's API) over `wasi:http/outgoing-handler` and reads the
//! answer, all within the post's timeout from sending to the last byte,
//! whether or not the host honours the request options.
#![forbid(unsafe_code)]

use vapi_edge_core::http::split_url;
use vapi_edge_core::outbound::{OutboundError, OutboundReply, OutboundRequest, MAX_REPLY_BYTES};
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, RequestOptions,
    Scheme,
};
use wasi::io::poll::Pollable;
use wasi::io::streams::StreamError;

/// A host's error as ours: the timeouts the host enforces (the request
/// options) are timeouts like ours.
fn host_error(what: &str, timeout_ms: u64) -> impl Fn(ErrorCode) -> OutboundError + '_ {
    move |error| match error {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout => OutboundError::Timeout(timeout_ms),
        other => OutboundError::Transport(format!("{what}: {other:?}")),
    }
}

pub fn send(post: &OutboundRequest) -> Result<OutboundReply, OutboundError> {
    let target = split_url(&post.url).map_err(OutboundError::InvalidUrl)?;
    let fields = Fields::from_list(&post.headers)
        .map_err(|e| OutboundError::Transport(format!("headers: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let scheme = if target.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_method(if post.get {
            &Method::Get
        } else {
            &Method::Post
        })
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(Some(&target.authority)))
        .and_then(|()| request.set_path_with_query(Some(&target.path_and_query)))
        .map_err(|()| OutboundError::InvalidUrl("not a valid request target"))?;
    let unavailable = |()| OutboundError::Transport("request body unavailable".into());
    let body = request.body().map_err(unavailable)?;

    let timeout_ns = post.timeout_ms.saturating_mul(1_000_000);
    let options = RequestOptions::new();
    // Hosts may not support every option; the deadline below holds regardless.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));
    let deadline = wasi::clocks::monotonic_clock::subscribe_duration(timeout_ns);
    let timeout = || OutboundError::Timeout(post.timeout_ms);

    let pending = outgoing_handler::handle(request, Some(options))
        .map_err(|e| OutboundError::Refused(format!("{e:?}")))?;
    if !post.body.is_empty() {
        let stream = body.write().map_err(unavailable)?;
        for chunk in post.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| OutboundError::Transport(format!("write: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(host_error("finish", post.timeout_ms))?;

    let ready = pending.subscribe();
    let response = loop {
        if let Some(result) = pending.get() {
            break result
                .map_err(|()| OutboundError::Transport("response taken twice".into()))?
                .map_err(host_error("response", post.timeout_ms))?;
        }
        if deadline.ready() {
            return Err(timeout());
        }
        wasi::io::poll::poll(&[&ready, &deadline]);
    };
    read_reply(response, &deadline).map_err(|e| match e {
        ReadError::Timeout => timeout(),
        ReadError::Other(error) => error,
    })
}

enum ReadError {
    Timeout,
    Other(OutboundError),
}

/// The status, content type and whole body, until `deadline`.
fn read_reply(response: IncomingResponse, deadline: &Pollable) -> Result<OutboundReply, ReadError> {
    let status = response.status();
    let headers = response.headers();
    let header = |name: &str| {
        headers
            .get(&name.to_string())
            .first()
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    let (content_type, retry_after) = (header("content-type"), header("retry-after"));
    drop(headers);
    let other = |what: &str| ReadError::Other(OutboundError::Transport(what.to_string()));
    let body = response
        .consume()
        .map_err(|()| other("response body unavailable"))?;
    let stream = body
        .stream()
        .map_err(|()| other("response body unavailable"))?;
    let mut bytes = Vec::new();
    loop {
        match stream.read(64 * 1024) {
            Ok(chunk) if chunk.is_empty() => {
                if deadline.ready() {
                    return Err(ReadError::Timeout);
                }
                wasi::io::poll::poll(&[&stream.subscribe(), deadline]);
            }
            Ok(chunk) => {
                if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(ReadError::Other(OutboundError::TooLarge));
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(ReadError::Other(OutboundError::Transport(format!(
                    "read: {}",
                    e.to_debug_string()
                ))))
            }
        }
    }
    drop(stream);
    Ok(OutboundReply {
        retry_after,
        status,
        content_type,
        body: bytes,
    })
}
