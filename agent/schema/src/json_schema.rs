//! The events' JSON Schema (draft 2020-12), generated from the types above so that it
//! cannot drift from what serde and the fast writer produce. The repository keeps a copy
//! (schema/kcdscope-event.schema.json) that a test compares with this.

use schemars::generate::SchemaSettings;
use schemars::transform::{transform_subschemas, Transform};
use schemars::Schema;

use crate::Event;

/// Objects with named properties accept no others: an unknown field in an event is a
/// change of layout the schema must show, not something to let through silently.
/// (Maps such as a finding's `facts` have no `properties` and stay open.)
#[derive(Clone)]
struct Closed;

impl Transform for Closed {
    fn transform(&mut self, schema: &mut Schema) {
        if let Some(o) = schema.as_object_mut() {
            if o.contains_key("properties") && !o.contains_key("additionalProperties") {
                o.insert("additionalProperties".into(), false.into());
            }
        }
        transform_subschemas(self, schema);
    }
}

/// The schema of one line of kcdscope's NDJSON, as written (serialisation contract:
/// a field left out when empty is not required).
pub fn event_json_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .with_transform(Closed)
        .into_generator();
    let mut schema = generator.into_root_schema_for::<Event<'static>>();
    schema.insert("title".into(), "kcdscope event".into());
    schema.insert(
        "description".into(),
        format!(
            "One line of kcdscope's NDJSON (schema_version {}): Suricata EVE layout, an \
             event_type and one object named after it. Field meanings are in the README's \
             Event schema section.",
            crate::SCHEMA_VERSION
        )
        .into(),
    );
    schema.to_value()
}
