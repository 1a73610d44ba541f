//! Test support for the end-to-end scenarios: a real Synapse, simulated
//! humans (matrix-sdk clients with E2EE), the bot process, and polling.
//!
//! It all lives in the `surfaces-testkit` crate; this module names it as the scenarios know
//! it (`crate::support::...`) and adds the one thing only this package knows: where cargo
//! put the `surfaces` binary.
#![allow(unused_imports)]

pub use surfaces_testkit::wait::*;

pub use bot::BotProcess;
pub use person::{InviteInfo, Person, ReceivedMessage};
pub use synapse::{Synapse, UserCreds};

pub mod bot {
    pub use surfaces_testkit::bot::*;

    /// The `surfaces` binary cargo built for these tests.
    pub struct Surfaces;

    impl BotBinary for Surfaces {
        fn path() -> std::path::PathBuf {
            std::path::PathBuf::from(env!("CARGO_BIN_EXE_surfaces"))
        }
    }

    /// The bot under test.
    pub type BotProcess = surfaces_testkit::bot::BotProcess<Surfaces>;
}

pub mod a2a {
    pub use surfaces_testkit::a2a::*;
}

pub mod key_hold {
    pub use surfaces_testkit::key_hold::*;
}

pub mod litellm {
    pub use surfaces_testkit::litellm::*;
}

pub mod person {
    pub use surfaces_testkit::person::*;
}

pub mod reference_agent {
    pub use surfaces_testkit::reference_agent::*;
}

pub mod synapse {
    pub use surfaces_testkit::synapse::*;
}
