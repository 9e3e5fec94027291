//! TCP connection tracking: a simplified RFC 793 observer sitting on the NAT.
//!
//! The gateway sees both directions of every flow but not sequence-number validity, so it tracks
//! only the shape of the conversation, enough to pick the RFC 5382 idle timeout (established vs
//! transitory) and to know when a connection is over:
//!
//! ```text
//!  SynSent --SYN-ACK to consumer--> SynReceived --ACK to service--> Established
//!     (SYN to service retransmits)     (SYN/SYN-ACK retransmits)        |
//!                                                                   FIN either way
//!                                                                       v
//!  TimeWait <--ACK after both FINs-- FinWait{to_service, to_consumer} <-+  (data keeps flowing)
//!  any state --RST--> Closed;  Closed/TimeWait --SYN to service--> SynSent (reopen)
//! ```

use crate::key::Direction;
use crate::timeouts::Timeouts;
use std::time::Duration;

/// Where a tracked TCP connection is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TcpState {
    /// The consumer's SYN was seen.
    SynSent,
    /// The server's SYN-ACK was seen.
    SynReceived,
    /// The consumer's ACK completed the handshake.
    Established,
    /// A FIN was seen in each direction whose flag is set; both set means the final ACK is due.
    FinWait {
        /// The consumer sent a FIN (towards the service).
        to_service: bool,
        /// The server sent a FIN (towards the consumer).
        to_consumer: bool,
    },
    /// Both FINs were seen and the last one acknowledged.
    TimeWait,
    /// A RST was seen.
    Closed,
}

/// The tracked state of one TCP flow (small and `Copy`, stored inline in the flow entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpTracker {
    /// The current state.
    pub state: TcpState,
}

impl Default for TcpTracker {
    fn default() -> Self {
        TcpTracker::new()
    }
}

impl TcpTracker {
    /// A tracker for a flow created by the consumer's SYN.
    pub fn new() -> Self {
        TcpTracker { state: TcpState::SynSent }
    }

    /// Observe one segment travelling in `direction` with the given flags; returns the new state.
    ///
    /// - RST in any state → `Closed`.
    /// - Retransmitted SYN / SYN-ACK keep the handshake state; a SYN on an established or
    ///   closing connection is ignored.
    /// - In `SynReceived`, an ACK (without SYN) from the consumer → `Established` (a FIN on
    ///   it is then applied too).
    /// - A FIN in `Established`/`FinWait` sets that direction's flag; data and ACKs in a
    ///   half-closed connection keep it in `FinWait`.
    /// - With both FINs seen, the next ACK without FIN (the final ACK) → `TimeWait`.
    /// - In `TimeWait`/`Closed`, a fresh SYN (no ACK) from the consumer reopens → `SynSent`.
    pub fn on_segment(&mut self, direction: Direction, syn: bool, ack: bool, fin: bool, rst: bool) -> TcpState {
        use Direction::{ToConsumer, ToService};
        use TcpState::*;
        let to_service = direction == ToService;
        self.state = if rst {
            Closed
        } else {
            match self.state {
                SynSent => match direction {
                    // The server's SYN-ACK, or a bare SYN (simultaneous open).
                    ToConsumer if syn => SynReceived,
                    _ => SynSent,
                },
                SynReceived => {
                    if to_service && ack && !syn {
                        if fin {
                            FinWait { to_service: true, to_consumer: false }
                        } else {
                            Established
                        }
                    } else {
                        SynReceived
                    }
                }
                Established => {
                    if fin && !syn {
                        FinWait { to_service, to_consumer: !to_service }
                    } else {
                        Established
                    }
                }
                FinWait { to_service: ts, to_consumer: tc } => {
                    if syn {
                        self.state
                    } else if fin {
                        FinWait { to_service: ts || to_service, to_consumer: tc || !to_service }
                    } else if ts && tc && ack {
                        TimeWait
                    } else {
                        self.state
                    }
                }
                TimeWait | Closed => {
                    if to_service && syn && !ack {
                        SynSent
                    } else {
                        self.state
                    }
                }
            }
        };
        self.state
    }

    /// The idle timeout for the current state: RFC 5382 established or transitory.
    pub fn timeout(&self, t: &Timeouts) -> Duration {
        match self.state {
            TcpState::Established => t.tcp_established,
            _ => t.tcp_transitory,
        }
    }

    /// Whether the connection is over (`Closed` or `TimeWait`).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, TcpState::Closed | TcpState::TimeWait)
    }

    /// Whether the handshake completed and no FIN or RST has been seen.
    pub fn is_established(&self) -> bool {
        self.state == TcpState::Established
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{ToConsumer, ToService};
    use TcpState::*;

    // Flag shorthands: (syn, ack, fin, rst).
    const SYN: (bool, bool, bool, bool) = (true, false, false, false);
    const SYN_ACK: (bool, bool, bool, bool) = (true, true, false, false);
    const ACK: (bool, bool, bool, bool) = (false, true, false, false);
    const DATA: (bool, bool, bool, bool) = ACK;
    const FIN: (bool, bool, bool, bool) = (false, true, true, false);
    const RST: (bool, bool, bool, bool) = (false, false, false, true);
    const RST_ACK: (bool, bool, bool, bool) = (false, true, false, true);

    fn seg(t: &mut TcpTracker, d: Direction, f: (bool, bool, bool, bool)) -> TcpState {
        t.on_segment(d, f.0, f.1, f.2, f.3)
    }

    fn at(state: TcpState) -> TcpTracker {
        TcpTracker { state }
    }

    fn established() -> TcpTracker {
        let mut t = TcpTracker::new();
        seg(&mut t, ToService, SYN);
        seg(&mut t, ToConsumer, SYN_ACK);
        seg(&mut t, ToService, ACK);
        t
    }

    const FW_S: TcpState = FinWait { to_service: true, to_consumer: false };
    const FW_C: TcpState = FinWait { to_service: false, to_consumer: true };
    const FW_BOTH: TcpState = FinWait { to_service: true, to_consumer: true };

    #[test]
    fn three_way_handshake() {
        let mut t = TcpTracker::new();
        assert_eq!(t.state, SynSent);
        assert_eq!(seg(&mut t, ToService, SYN), SynSent);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), SynReceived);
        assert_eq!(seg(&mut t, ToService, ACK), Established);
        assert!(t.is_established());
        assert!(!t.is_closed());
    }

    #[test]
    fn syn_retransmits_keep_handshake_state() {
        let mut t = TcpTracker::new();
        assert_eq!(seg(&mut t, ToService, SYN), SynSent);
        assert_eq!(seg(&mut t, ToService, SYN), SynSent);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), SynReceived);
        // Consumer retransmits its SYN (the SYN-ACK was lost), server retransmits SYN-ACK.
        assert_eq!(seg(&mut t, ToService, SYN), SynReceived);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), SynReceived);
        assert_eq!(seg(&mut t, ToService, ACK), Established);
        // A late retransmitted SYN does not reset an established connection.
        assert_eq!(seg(&mut t, ToService, SYN), Established);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), Established);
    }

    #[test]
    fn handshake_needs_the_servers_syn_ack_and_the_consumers_ack() {
        // An ACK from the consumer before any SYN-ACK does not establish.
        let mut t = TcpTracker::new();
        assert_eq!(seg(&mut t, ToService, ACK), SynSent);
        // Plain data from the server in SynSent does not either.
        assert_eq!(seg(&mut t, ToConsumer, ACK), SynSent);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), SynReceived);
        // Only the consumer's ACK completes the handshake, not the server's.
        assert_eq!(seg(&mut t, ToConsumer, ACK), SynReceived);
        assert_eq!(seg(&mut t, ToService, SYN_ACK), SynReceived);
        assert_eq!(seg(&mut t, ToService, ACK), Established);
    }

    #[test]
    fn simultaneous_open_syn_from_server() {
        let mut t = TcpTracker::new();
        assert_eq!(seg(&mut t, ToConsumer, SYN), SynReceived);
        assert_eq!(seg(&mut t, ToService, ACK), Established);
    }

    #[test]
    fn ack_with_fin_completing_handshake() {
        let mut t = at(SynReceived);
        assert_eq!(seg(&mut t, ToService, FIN), FW_S);
    }

    #[test]
    fn rst_in_any_state_closes() {
        for state in [SynSent, SynReceived, Established, FW_S, FW_C, FW_BOTH, TimeWait, Closed] {
            for dir in [ToService, ToConsumer] {
                for flags in [RST, RST_ACK, (true, true, true, true)] {
                    let mut t = at(state);
                    assert_eq!(seg(&mut t, dir, flags), Closed, "{state:?} {dir:?} {flags:?}");
                    assert!(t.is_closed());
                }
            }
        }
    }

    #[test]
    fn data_keeps_established() {
        let mut t = established();
        for _ in 0..3 {
            assert_eq!(seg(&mut t, ToService, DATA), Established);
            assert_eq!(seg(&mut t, ToConsumer, DATA), Established);
        }
    }

    #[test]
    fn consumer_closes_first() {
        let mut t = established();
        assert_eq!(seg(&mut t, ToService, FIN), FW_S);
        assert!(!t.is_closed());
        // Half-closed: the server keeps sending data, the consumer keeps acking.
        assert_eq!(seg(&mut t, ToConsumer, DATA), FW_S);
        assert_eq!(seg(&mut t, ToService, ACK), FW_S);
        // A retransmitted FIN in the same direction changes nothing.
        assert_eq!(seg(&mut t, ToService, FIN), FW_S);
        assert_eq!(seg(&mut t, ToConsumer, FIN), FW_BOTH);
        assert!(!t.is_closed());
        assert_eq!(seg(&mut t, ToService, ACK), TimeWait);
        assert!(t.is_closed());
    }

    #[test]
    fn server_closes_first() {
        let mut t = established();
        assert_eq!(seg(&mut t, ToConsumer, FIN), FW_C);
        assert_eq!(seg(&mut t, ToService, DATA), FW_C);
        assert_eq!(seg(&mut t, ToService, FIN), FW_BOTH);
        assert_eq!(seg(&mut t, ToConsumer, ACK), TimeWait);
    }

    #[test]
    fn simultaneous_fin() {
        let mut t = established();
        assert_eq!(seg(&mut t, ToService, FIN), FW_S);
        assert_eq!(seg(&mut t, ToConsumer, FIN), FW_BOTH);
        // Retransmitted FINs while both are outstanding keep FinWait.
        assert_eq!(seg(&mut t, ToService, FIN), FW_BOTH);
        assert_eq!(seg(&mut t, ToConsumer, ACK), TimeWait);
        assert_eq!(seg(&mut t, ToService, ACK), TimeWait);
        assert_eq!(seg(&mut t, ToConsumer, FIN), TimeWait);
    }

    #[test]
    fn syn_ignored_while_closing() {
        let mut t = at(FW_S);
        assert_eq!(seg(&mut t, ToService, SYN), FW_S);
        let mut t = at(FW_BOTH);
        assert_eq!(seg(&mut t, ToConsumer, SYN_ACK), FW_BOTH);
    }

    #[test]
    fn fin_before_established_is_ignored() {
        let mut t = TcpTracker::new();
        assert_eq!(seg(&mut t, ToService, FIN), SynSent);
        let mut t = at(SynReceived);
        assert_eq!(seg(&mut t, ToConsumer, FIN), SynReceived);
    }

    #[test]
    fn fresh_syn_reopens_closed_and_time_wait() {
        for state in [TimeWait, Closed] {
            let mut t = at(state);
            // Stray segments do not reopen.
            assert_eq!(seg(&mut t, ToConsumer, SYN), state);
            assert_eq!(seg(&mut t, ToService, SYN_ACK), state);
            assert_eq!(seg(&mut t, ToService, ACK), state);
            assert_eq!(seg(&mut t, ToService, FIN), state);
            assert_eq!(seg(&mut t, ToService, SYN), SynSent);
            assert!(!t.is_closed());
        }
    }

    #[test]
    fn timeouts_by_state() {
        let t = Timeouts::default();
        assert_eq!(established().timeout(&t), t.tcp_established);
        for state in [SynSent, SynReceived, FW_S, FW_C, FW_BOTH, TimeWait, Closed] {
            assert_eq!(at(state).timeout(&t), t.tcp_transitory, "{state:?}");
        }
    }

    #[test]
    fn is_closed_only_for_closed_and_time_wait() {
        for state in [SynSent, SynReceived, Established, FW_S, FW_C, FW_BOTH] {
            assert!(!at(state).is_closed(), "{state:?}");
        }
        assert!(at(TimeWait).is_closed());
        assert!(at(Closed).is_closed());
    }

    #[test]
    fn tracker_is_small() {
        assert!(std::mem::size_of::<TcpTracker>() <= 4);
    }
}
