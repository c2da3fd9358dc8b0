//! Column definitions, written once as constants per kind.
//!
//! Descriptions follow upstream: literal texts where upstream has them, otherwise the API
//! documentation of the field the column shows (its first sentence; the name and age
//! columns carry ObjectMeta's full text, as upstream's do).

use super::ColumnDefinition;

/// A column as declared in a kind's constant table; turned into a [`ColumnDefinition`] per
/// response.
pub(super) struct Column {
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
}

impl Column {
    pub(super) const fn string(name: &'static str, description: &'static str) -> Self {
        Column { name, type_: "string", format: "", description, priority: 0 }
    }

    pub(super) const fn integer(name: &'static str, description: &'static str) -> Self {
        Column { name, type_: "integer", format: "", description, priority: 0 }
    }

    /// Only shown with `-o wide`.
    pub(super) const fn wide(self) -> Self {
        Column { priority: 1, ..self }
    }

    pub(super) fn definition(&self) -> ColumnDefinition {
        ColumnDefinition {
            name: self.name.to_string(),
            type_: self.type_.to_string(),
            format: self.format.to_string(),
            description: self.description.to_string(),
            priority: self.priority,
        }
    }
}

pub(super) const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

pub(super) const CREATION_TIMESTAMP_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The object's name; `format: name` tells kubectl which column identifies the row.
pub(super) const NAME: Column =
    Column { name: "Name", type_: "string", format: "name", description: NAME_DESCRIPTION, priority: 0 };

/// Time since creation, as `translateTimestampSince` prints it.
pub(super) const AGE: Column = Column::string("Age", CREATION_TIMESTAMP_DESCRIPTION);

/// The generic table's creation time column (an RFC 3339 date, not an age).
pub(super) const CREATED_AT: Column =
    Column { name: "Created At", type_: "date", format: "", description: CREATION_TIMESTAMP_DESCRIPTION, priority: 0 };

pub(super) const CONTAINERS: Column = Column::string("Containers", "Names of each container in the template.").wide();

pub(super) const IMAGES: Column =
    Column::string("Images", "Images referenced by each container in the template.").wide();
