//! Secrets, ConfigMaps and ServiceAccounts: a name, a count of entries, an age.

use serde_json::json;

use super::columns::{Column, AGE, NAME};
use super::format::{age, count, name, text};
use super::{KindPrinter, TableRow};

pub(super) const SECRET: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string("Type", "Used to facilitate programmatic handling of secret data."),
        Column::string("Data", "Data contains the secret data."),
        AGE,
    ],
    print: |secret, now| {
        TableRow::new(vec![
            json!(name(secret)),
            json!(text(secret, "/type")),
            json!(count(secret, "/data")),
            json!(age(secret, now)),
        ])
    },
};

pub(super) const CONFIG_MAP: KindPrinter = KindPrinter {
    columns: &[NAME, Column::string("Data", "Data contains the configuration data."), AGE],
    print: |config_map, now| {
        let entries = count(config_map, "/data") + count(config_map, "/binaryData");
        TableRow::new(vec![json!(name(config_map)), json!(entries), json!(age(config_map, now))])
    },
};

pub(super) const SERVICE_ACCOUNT: KindPrinter = KindPrinter {
    columns: &[
        NAME,
        Column::string(
            "Secrets",
            "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        ),
        AGE,
    ],
    print: |account, now| {
        TableRow::new(vec![json!(name(account)), json!(count(account, "/secrets")), json!(age(account, now))])
    },
};
