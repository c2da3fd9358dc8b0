//! `labelSelector` and `fieldSelector` of list, watch and deletecollection requests.

use serde_json::Value;
use skiff_api::registry::ResourceDef;
use skiff_api::ApiError;
use skiff_core::{fields, labels};

use crate::http::Query;

/// The selectors of one request; an empty filter matches everything.
#[derive(Debug, Default)]
pub struct Filter {
    labels: Option<labels::Selector>,
    fields: Option<fields::Selector>,
    def: Option<&'static ResourceDef>,
}

impl Filter {
    pub fn from_query(def: &'static ResourceDef, query: &Query) -> Result<Filter, ApiError> {
        let labels = match query.value("labelSelector") {
            Some(s) => Some(labels::Selector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?),
            None => None,
        };
        let fields = match query.value("fieldSelector") {
            Some(s) => {
                let sel = fields::Selector::parse(s).map_err(|e| ApiError::BadRequest(e.to_string()))?;
                // Reject unsupported field labels up front, as upstream does.
                let probe = serde_json::json!({});
                for field in sel.fields() {
                    skiff_api::printers::field_value(def.group, def.kind, &probe, field)
                        .map_err(ApiError::BadRequest)?;
                }
                Some(sel)
            }
            None => None,
        };
        Ok(Filter { labels, fields, def: Some(def) })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_none() && self.fields.is_none()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(sel) = &self.labels {
            if !sel.matches_object(obj) {
                return false;
            }
        }
        if let (Some(sel), Some(def)) = (&self.fields, self.def) {
            let lookup = |field: &str| skiff_api::printers::field_value(def.group, def.kind, obj, field).ok().flatten();
            if !sel.matches(lookup) {
                return false;
            }
        }
        true
    }
}
