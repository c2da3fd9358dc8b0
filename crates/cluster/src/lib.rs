//! # skiff-cluster: a Kubernetes cluster on one Linux machine
//!
//! `skiff up` builds a multi-node cluster out of network namespaces (no containers, no
//! VMs): a node network on a bridge, one namespace per node running `skiff agent` and
//! `skiff proxy`, and the API server and controllers next to the bridge. `--isolated` puts
//! the bridge itself in a sandbox namespace so the machine's own network is never touched.
//!
//! - [`layout`]: every name and address, derived from the cluster name (start here);
//! - [`up`]: building the network, starting the components, waiting for `ready`;
//! - [`system`]: cluster DNS as pods behind Service kube-dns;
//! - [`teardown`]: `skiff down`, `skiff run`, and the cleanup both share with `up`;
//! - [`netns`], [`processes`], [`state`]: the plumbing.

pub mod layout;
pub mod netns;
pub mod processes;
pub mod state;
pub mod system;
pub mod teardown;
pub mod up;

pub use teardown::{down, run, DownArgs, RunArgs};
pub use up::{up, UpArgs};
