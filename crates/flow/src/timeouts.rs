//! Idle timeouts of flows, defaulting to the minimums of the NAT behavioural RFCs.

use std::time::Duration;

/// Idle timeouts per protocol and state, and the NAT port cool-down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// RFC 5382 REQ-5: an established TCP connection idles at least 2 h 4 min (7440 s).
    pub tcp_established: Duration,
    /// RFC 5382 REQ-5: a partially open or closing TCP connection idles at least 4 min (240 s).
    pub tcp_transitory: Duration,
    /// RFC 4787 REQ-5: a UDP mapping idles at least 2 min; 5 min recommended (the default).
    pub udp: Duration,
    /// RFC 5508 REQ-1: an ICMP query mapping idles at least 60 s.
    pub icmp: Duration,
    /// How long a freed NAT ip:port stays reserved towards the same backend (TIME_WAIT safety).
    pub port_cooldown: Duration,
}

impl Timeouts {
    /// The RFC minimums (RFC 5382, 4787, 5508); the cool-down has no RFC minimum and is 0 here.
    pub const RFC_MINIMUM: Timeouts = Timeouts {
        tcp_established: Duration::from_secs(7440),
        tcp_transitory: Duration::from_secs(240),
        udp: Duration::from_secs(120),
        icmp: Duration::from_secs(60),
        port_cooldown: Duration::ZERO,
    };

    /// Whether every timeout is at least its RFC minimum (a configuration may go below on purpose,
    /// e.g. in tests, but should warn).
    pub fn meets_rfc_minimums(&self) -> bool {
        let min = Timeouts::RFC_MINIMUM;
        self.tcp_established >= min.tcp_established
            && self.tcp_transitory >= min.tcp_transitory
            && self.udp >= min.udp
            && self.icmp >= min.icmp
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(7440),
            tcp_transitory: Duration::from_secs(240),
            udp: Duration::from_secs(300),
            icmp: Duration::from_secs(60),
            port_cooldown: Duration::from_secs(120),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_rfc_values() {
        let t = Timeouts::default();
        assert_eq!(t.tcp_established, Duration::from_secs(2 * 3600 + 4 * 60));
        assert_eq!(t.tcp_established, Duration::from_secs(7440));
        assert_eq!(t.tcp_transitory, Duration::from_secs(240));
        assert_eq!(t.udp, Duration::from_secs(300));
        assert_eq!(t.icmp, Duration::from_secs(60));
        assert_eq!(t.port_cooldown, Duration::from_secs(120));
        assert!(t.meets_rfc_minimums());
        assert!(Timeouts::RFC_MINIMUM.meets_rfc_minimums());
    }

    #[test]
    fn below_minimum_is_detected() {
        let d = Timeouts::default();
        for t in [
            Timeouts { udp: Duration::from_secs(119), ..d },
            Timeouts { tcp_established: Duration::from_secs(7439), ..d },
            Timeouts { icmp: Duration::from_secs(59), ..d },
            Timeouts { tcp_transitory: Duration::from_secs(239), ..d },
        ] {
            assert!(!t.meets_rfc_minimums(), "{t:?}");
        }
    }
}
