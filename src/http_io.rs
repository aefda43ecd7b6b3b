//! Reading a wasi:http request into memory (with a size bound) and writing a response.
//!
//! Uses the raw wasi:http types rather than spin-sdk's `Request`, whose header map
//! keeps only one value per name: verification must see a repeated header.
#![forbid(unsafe_code)]

use spin_sdk::http::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};
use vapi_edge_core::headers::Headers;
use vapi_edge_core::http::{Request, Response, MAX_BODY_BYTES};

/// The request's head (method, path, headers), with an empty body, and the
/// request itself, whose body is still to be read; or the answer to give at
/// once: 413 when `content-length` announces more than [`MAX_BODY_BYTES`].
pub fn read_head(incoming: IncomingRequest) -> Result<(Request, IncomingRequest), Response> {
    let method = incoming.method().to_string();
    let path = incoming
        .path_with_query()
        .unwrap_or_else(|| "/".to_string());
    let headers: Headers = incoming.headers().entries().into_iter().collect();
    if let Ok(Some(length)) = headers.one("content-length") {
        if length
            .parse::<u64>()
            .is_ok_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(Response::payload_too_large());
        }
    }
    let head = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    Ok((head, incoming))
}

/// Reads the body into `head`; one over [`MAX_BODY_BYTES`] is refused with
/// 413 without reading the rest.
pub fn read_body_into(mut head: Request, incoming: IncomingRequest) -> Result<Request, Response> {
    let body = read_body(incoming)
        .map_err(|()| Response::bad_request("body", "could not read the request body"))?;
    head.body = body.ok_or_else(Response::payload_too_large)?;
    Ok(head)
}

/// `Ok(None)` when the body is larger than the limit.
fn read_body(incoming: IncomingRequest) -> Result<Option<Vec<u8>>, ()> {
    let body = incoming.consume().map_err(|_| ())?;
    let stream = body.stream().map_err(|_| ())?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                    return Ok(None);
                }
                bytes.extend_from_slice(&chunk);
            }
            Err(wasi::io::streams::StreamError::Closed) => break,
            Err(_) => return Err(()),
        }
    }
    drop(stream);
    Ok(Some(bytes))
}

/// Sends status, headers and body. Write errors (the client went away) are ignored:
/// there is no one left to tell.
pub fn write_response(out: ResponseOutparam, response: Response) {
    let mut entries: Vec<(String, Vec<u8>)> = vec![(
        "content-type".to_string(),
        response.content_type.as_bytes().to_vec(),
    )];
    for (name, value) in &response.headers {
        entries.push((name.to_string(), value.as_bytes().to_vec()));
    }
    // A known length: the host sends the body as it is, not in chunks.
    entries.push((
        "content-length".to_string(),
        response.body.len().to_string().into_bytes(),
    ));
    let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
    let outgoing = OutgoingResponse::new(fields);
    let _ = outgoing.set_status_code(response.status);
    let Ok(body) = outgoing.body() else { return };
    let stream = body.write().ok();
    // Queue what the host will take now, before it has the response: then it
    // can send the head and the body in one segment. Spin does not set
    // TCP_NODELAY, so a body that follows its head in a second small segment
    // waits for the client's delayed ACK (~40 ms; BENCHMARKS.md, "Kept: the response body queued before the response").
    // `check_write` never blocks: a host that takes nothing yet gets the body
    // after the response, as before.
    let mut rest: &[u8] = &response.body;
    if let Some(stream) = &stream {
        let permitted = stream
            .check_write()
            .map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let now = rest.len().min(permitted);
        if now > 0 && stream.write(&rest[..now]).is_ok() {
            rest = &rest[now..];
        }
    }
    out.set(outgoing);
    if let Some(stream) = stream {
        for chunk in rest.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}
