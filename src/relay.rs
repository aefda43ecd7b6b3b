//! Sends a dashboard notification (`vapi_edge_core::relay`) over
//! `wasi:http/outgoing-handler`, within `relay::TIMEOUT_MS` from connection to
//! the answer's status, whether or not the host honours the request options.
#![forbid(unsafe_code)]

use vapi_edge_core::http::split_url;
use vapi_edge_core::relay::{Notification, RelayError, TIMEOUT_MS};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};

/// The relay's status code, or why there is none.
pub fn send(notification: &Notification, now_ms: i64) -> Result<u16, RelayError> {
    let target = split_url(&notification.url).map_err(RelayError::InvalidUrl)?;
    let fields = Fields::from_list(&notification.headers(now_ms))
        .map_err(|e| RelayError::Transport(format!("headers: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let scheme = if target.scheme == "https" {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_method(&Method::Post)
        .and_then(|()| request.set_scheme(Some(&scheme)))
        .and_then(|()| request.set_authority(Some(&target.authority)))
        .and_then(|()| request.set_path_with_query(Some(&target.path_and_query)))
        .map_err(|()| RelayError::InvalidUrl("not a valid request target"))?;
    let unavailable = |()| RelayError::Transport("request body unavailable".into());
    let body = request.body().map_err(unavailable)?;

    let timeout_ns = TIMEOUT_MS * 1_000_000;
    let options = RequestOptions::new();
    // Hosts may not support every option; the deadline below holds regardless.
    let _ = options.set_connect_timeout(Some(timeout_ns));
    let _ = options.set_first_byte_timeout(Some(timeout_ns));
    let _ = options.set_between_bytes_timeout(Some(timeout_ns));
    let deadline = wasi::clocks::monotonic_clock::subscribe_duration(timeout_ns);

    let pending = outgoing_handler::handle(request, Some(options))
        .map_err(|e| RelayError::Refused(format!("{e:?}")))?;
    {
        let stream = body.write().map_err(unavailable)?;
        for chunk in notification.body.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| RelayError::Transport(format!("write: {e:?}")))?;
        }
    }
    OutgoingBody::finish(body, None)
        .map_err(|e| RelayError::Transport(format!("finish: {e:?}")))?;

    let ready = pending.subscribe();
    loop {
        if let Some(result) = pending.get() {
            let response = result
                .map_err(|()| RelayError::Transport("response taken twice".into()))?
                .map_err(|e| RelayError::Transport(format!("{e:?}")))?;
            return Ok(response.status());
        }
        if deadline.ready() {
            return Err(RelayError::Timeout);
        }
        wasi::io::poll::poll(&[&ready, &deadline]);
    }
}
