//! HTTP/1.1, hand-rolled on `httparse`: parsing (`request`), writing
//! (`response`) and the connection state machine (`connection`).

pub mod connection;
pub mod request;
pub mod response;
