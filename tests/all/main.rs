//! Engine integration tests: whole flows through the datapath over in-memory I/O, on an injected
//! clock, with frames built and checked by etherparse.

mod icmp_errors;
mod malformed;
mod overlap;
mod ports;
mod proxy;
mod proxy_model;
mod telemetry;
mod timers;
mod translate;
mod workers;
