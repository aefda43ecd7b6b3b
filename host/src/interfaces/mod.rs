//! The host side of every import the component has beyond wasi:cli and
//! wasi:http, one module per WIT interface: each converts the interface's
//! generated types to the backends' plain ones and back, and nothing else.

mod key_value;
mod postgres;
mod sqlite;
#[cfg(test)]
mod test_support;
mod variables;
