//! Caps the rate of new connections per endpoint.
//!
//! Configuration: `{"per_second": 100, "burst": 100, "action": "reset"}`. Each endpoint (by link
//! id) has a token bucket holding up to `burst` (default: `per_second`) connections, refilled at
//! `per_second`; a flow that finds it empty gets `action` (`"reset"`, the default, or `"deny"`),
//! any other `allow` with no TLVs.
//!
//! A plugin has no clock: it reads the time from `connect-request.time-ms`. Its state lives in its
//! own instance, and the gateway keeps one instance per worker, so the cap holds per worker:
//! with W workers an endpoint may open up to W × `per_second` connections a second.
#![no_std]

extern crate alloc;
extern crate support;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use support::{Config, Global};

wit_bindgen::generate!({
    inline: "
        package overlink:connection-quota;
        world connection-quota {
            export overlink:policy/lifecycle@0.1.0;
            export overlink:policy/connect@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::connect::{self, Action, ConnectRequest, ConnectVerdict};
use exports::overlink::policy::lifecycle;

/// The largest `per_second` and `burst` accepted.
const MAX_RATE: u64 = 1_000_000;
/// Above this many tracked endpoints, the idle ones (full buckets) are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// One endpoint's bucket. Tokens are counted in thousandths so that a refill of `per_second`
/// tokens a second is exact in whole milliseconds.
#[derive(Clone, Copy)]
struct Bucket {
    milli_tokens: u64,
    updated_ms: u64,
}

struct Quota {
    per_second: u64,
    burst: u64,
    over: Action,
    buckets: BTreeMap<u32, Bucket>,
}

impl Quota {
    fn capacity(&self) -> u64 {
        self.burst * 1000
    }

    /// Takes one token from `link_id`'s bucket at `now_ms`; false when it is empty.
    fn take(&mut self, link_id: u32, now_ms: u64) -> bool {
        let capacity = self.capacity();
        if self.buckets.len() > PRUNE_ABOVE {
            self.prune(now_ms);
        }
        let bucket = self.buckets.entry(link_id).or_insert(Bucket { milli_tokens: capacity, updated_ms: now_ms });
        // A full refill takes at most `burst / per_second` seconds; longer gaps change nothing
        // (and capping them keeps the product from overflowing).
        let elapsed = now_ms.saturating_sub(bucket.updated_ms).min(capacity);
        bucket.milli_tokens = (bucket.milli_tokens + elapsed * self.per_second).min(capacity);
        bucket.updated_ms = bucket.updated_ms.max(now_ms);
        if bucket.milli_tokens >= 1000 {
            bucket.milli_tokens -= 1000;
            true
        } else {
            false
        }
    }

    /// Forgets the buckets that would be full by now: for those, absent means the same.
    fn prune(&mut self, now_ms: u64) {
        let (capacity, per_second) = (self.capacity(), self.per_second);
        self.buckets.retain(|_, bucket| {
            let elapsed = now_ms.saturating_sub(bucket.updated_ms).min(capacity);
            bucket.milli_tokens + elapsed * per_second < capacity
        });
    }
}

static QUOTA: Global<Option<Quota>> = Global::new(None);

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config, &["per_second", "burst", "action"])?;
        let per_second = config
            .integer("per_second", 1, MAX_RATE)?
            .ok_or("configuration: `per_second` (new connections per endpoint per second) is required")?;
        let burst = config.integer("burst", 1, MAX_RATE)?.unwrap_or(per_second);
        let over = match config.choice("action", &["reset", "deny"])? {
            Some("deny") => Action::Deny,
            _ => Action::Reset,
        };
        QUOTA.with(|quota| *quota = Some(Quota { per_second, burst, over, buckets: BTreeMap::new() }));
        Ok(())
    }
}

impl connect::Guest for Plugin {
    fn check(request: ConnectRequest) -> ConnectVerdict {
        let action = QUOTA.with(|quota| match quota {
            Some(quota) => {
                if quota.take(request.endpoint.link_id, request.time_ms) {
                    Action::Allow
                } else {
                    quota.over
                }
            }
            // Not configured (the host always calls `init` first): fail closed.
            None => Action::Reset,
        });
        ConnectVerdict { action, tlvs: Vec::new() }
    }
}

export!(Plugin);
