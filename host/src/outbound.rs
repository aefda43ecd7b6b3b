//! Outbound HTTP from a component (`wasi:http/outgoing-handler`): allowed only
//! to the destinations in its `allowed_outbound_hosts`, as in Spin.

use http_body_util::BodyExt;
use std::sync::Arc;
use vapi_edge_backends::allowed_hosts::{default_port, AllowedHosts};
use vapi_edge_backends::log;
use wasmtime_wasi_http::WasiHttpHooks;

/// Outbound HTTP policy: only destinations in `allowed_outbound_hosts`.
pub struct OutboundHooks {
    pub allowed: Arc<AllowedHosts>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn std::future::Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<
                        dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                            + Send,
                    >,
                )>,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .or_else(|| default_port(&scheme))
            .unwrap_or(443);
        if !self.allowed.allows(&scheme, &host, port) {
            log::write(
                log::warn("outbound request denied")
                    .field("target", format!("{scheme}://{host}:{port}"))
                    .field("reason", "not in allowed_outbound_hosts"),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let _ = fut;
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}
