//! The per-request options as an OpenAPI schema: one property per [`Scope::Request`] option,
//! with its type, range, default and help from [`OPTIONS`].

use utoipa::openapi::schema::{
    AdditionalProperties, Object, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::RefOr;

use super::schema::{Kind, OptionSpec, Scope};
use super::OPTIONS;

/// The schema of a request's `options`: an object of the per-request options, all optional,
/// no others.
pub fn request_options() -> RefOr<Schema> {
    let mut object = ObjectBuilder::new()
        .description(Some(
            "Per-request options, by the command line's flag names in snake case. Absent ones \
             (and null ones) take the server's defaults (those of `spangrad serve`'s flags).",
        ))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for spec in OPTIONS.iter().filter(|s| s.scope == Scope::Request) {
        object = object.property(spec.name, option(spec));
    }
    RefOr::T(Schema::Object(object.build()))
}

/// One option's schema: its values, or null for the server's default.
fn option(spec: &OptionSpec) -> RefOr<Schema> {
    let value: RefOr<Schema> = match spec.kind {
        Kind::Named => (spec.named_schema)().expect("a named option has its values' schema"),
        kind => {
            let ty = match kind {
                Kind::Integer => Type::Integer,
                Kind::Number => Type::Number,
                _ => Type::Boolean,
            };
            let mut number = ObjectBuilder::new().schema_type(ty);
            if kind == Kind::Integer {
                number = number
                    .minimum(Some(spec.min.unwrap_or(0.0)))
                    .maximum(Some(spec.max.unwrap_or(u64::MAX as f64)));
            } else {
                number = number.minimum(spec.min).maximum(spec.max);
            }
            RefOr::T(Schema::Object(number.build()))
        }
    };
    let default = spec.default_value();
    let schema = OneOfBuilder::new()
        .item(Object::with_type(SchemaType::Type(Type::Null)))
        .item(value)
        .description(Some(spec.summary()))
        .default((!default.is_null()).then_some(default));
    RefOr::T(Schema::OneOf(schema.build()))
}
