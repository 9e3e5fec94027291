//! Listed accounts see the services and are approved at once.
//!
//! Configuration: `{"accounts": ["acme", "globex"]}` (required).
//!
//! - visibility: a listed account sees every service (`visible`); any other account sees none
//!   (`hidden`), so put this plugin last when others should decide first.
//! - approval: a listed account's endpoint is approved at once; for any other account it abstains
//!   (the next plugin or the configuration's auto-approval list decides).
#![no_std]

extern crate alloc;
extern crate support;

use alloc::string::String;
use alloc::vec::Vec;
use support::{Config, Global};

wit_bindgen::generate!({
    inline: "
        package overlink:allow-accounts;
        world allow-accounts {
            export overlink:policy/lifecycle@0.1.0;
            export overlink:policy/visibility@0.1.0;
            export overlink:policy/approval@0.1.0;
        }
    ",
    path: "../../wit",
    generate_all,
});

use exports::overlink::policy::{approval, lifecycle, visibility};
use overlink::policy::types::Service;

/// The listed accounts, set by `init`.
static ACCOUNTS: Global<Vec<String>> = Global::new(Vec::new());

fn listed(account: &str) -> bool {
    ACCOUNTS.with(|accounts| accounts.iter().any(|listed| listed == account))
}

struct Plugin;

impl lifecycle::Guest for Plugin {
    fn init(config: String) -> Result<(), String> {
        let config = Config::parse(&config, &["accounts"])?;
        let accounts =
            config.strings("accounts")?.ok_or("configuration: `accounts` (a list of account names) is required")?;
        ACCOUNTS.with(|listed| *listed = accounts);
        Ok(())
    }
}

impl visibility::Guest for Plugin {
    fn visible(account: String, _svc: Service) -> visibility::VisibilityVerdict {
        if listed(&account) {
            visibility::VisibilityVerdict::Visible
        } else {
            visibility::VisibilityVerdict::Hidden
        }
    }
}

impl approval::Guest for Plugin {
    fn decide(request: approval::ApprovalRequest) -> approval::ApprovalVerdict {
        if listed(&request.account) {
            approval::ApprovalVerdict::Approve
        } else {
            approval::ApprovalVerdict::Abstain
        }
    }
}

export!(Plugin);
