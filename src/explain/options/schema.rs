//! The machinery of the one options definition (in `mod.rs`): a table with an entry per
//! option, from which the command line's flags, the server's `options` object and Python's
//! keywords are made.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::ExplainOptions;
use crate::error::{InvalidOption, Phrase};

/// When an option can be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// With every call: a server request's `options`, Python's `explain(..., **options)`.
    Request,
    /// Once, when the model is loaded (the weights' dtype, memory, limits): the command line,
    /// Python's `Explainer(...)`.
    Load,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Load => "load",
        }
    }
}

/// The JSON type of an option's values, for the server's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer,
    Number,
    Boolean,
    /// One of named values (an enum of strings), or for [`super::BatchTokens`] a number too.
    Named,
}

/// A type an option's value can have.
pub trait OptionValue: Clone + PartialEq + Serialize + DeserializeOwned + 'static {
    /// What a command-line value parses to: `T` for an `Option<T>` (no flag is `None`).
    type Flag: Clone + Send + Sync + 'static;
    const KIND: Kind;
    /// `None` is a value (its meaning said in the help): the option's default is "auto".
    const NULLABLE: bool = false;

    fn from_flag(flag: Self::Flag) -> Self;

    /// The value as a number, for range checks.
    fn number(&self) -> Option<f64> {
        None
    }

    /// The schema of a value, for named values (numbers and booleans are made from
    /// [`Kind`] and the option's range).
    #[cfg(feature = "serve")]
    fn named_schema() -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
        None
    }
}

macro_rules! number_value {
    ($($ty:ty => $kind:ident),*) => {$(
        impl OptionValue for $ty {
            type Flag = $ty;
            const KIND: Kind = Kind::$kind;
            fn from_flag(flag: $ty) -> Self {
                flag
            }
            fn number(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}
number_value!(usize => Integer, u64 => Integer, f64 => Number);

impl OptionValue for bool {
    type Flag = bool;
    const KIND: Kind = Kind::Boolean;
    fn from_flag(flag: bool) -> Self {
        flag
    }
}

impl<T: OptionValue<Flag = T> + Send + Sync> OptionValue for Option<T> {
    type Flag = T;
    const KIND: Kind = T::KIND;
    const NULLABLE: bool = true;
    fn from_flag(flag: T) -> Self {
        Some(flag)
    }
    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(T::number)
    }
    #[cfg(feature = "serve")]
    fn named_schema() -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
        T::named_schema()
    }
}

/// An enum of named values, with its schema from its `ToSchema` derive.
macro_rules! named_value {
    ($($ty:ty),*) => {$(
        impl $crate::explain::options::schema::OptionValue for $ty {
            type Flag = $ty;
            const KIND: $crate::explain::options::schema::Kind =
                $crate::explain::options::schema::Kind::Named;
            fn from_flag(flag: $ty) -> Self {
                flag
            }
            #[cfg(feature = "serve")]
            fn named_schema() -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>> {
                Some(<$ty as utoipa::PartialSchema>::schema())
            }
        }
    )*};
}
pub(super) use named_value;

/// One option: everything every front needs to know about it.
pub struct OptionSpec {
    /// Its name: the field of [`ExplainOptions`], the server's `options` key, Python's keyword;
    /// the flag is the same in kebab case.
    pub name: &'static str,
    /// Its doc comment.
    pub help: &'static str,
    pub scope: Scope,
    pub kind: Kind,
    /// `None` is a value of it, said in the help.
    pub nullable: bool,
    /// The smallest and largest values, for numbers.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub(super) get: fn(&ExplainOptions) -> Value,
    pub(super) set: fn(&mut ExplainOptions, Value) -> serde_json::Result<()>,
    pub(super) number: fn(&ExplainOptions) -> Option<f64>,
    #[cfg(feature = "cli")]
    pub(super) flag: fn(clap::Arg) -> clap::Arg,
    #[cfg(feature = "cli")]
    pub(super) from_flag: fn(&clap::ArgMatches, &mut ExplainOptions),
    #[cfg(feature = "serve")]
    pub(super) named_schema:
        fn() -> Option<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>>,
}

impl OptionSpec {
    /// The option's value in `options`, as JSON (`null` for an "auto" left unset).
    pub fn get(&self, options: &ExplainOptions) -> Value {
        (self.get)(options)
    }

    /// The default, as JSON.
    pub fn default_value(&self) -> Value {
        self.get(&ExplainOptions::default())
    }

    /// Sets the option from a JSON value, checked against its type and range. `null` resets
    /// an "auto" option; it is an error for the others.
    pub fn set(&self, options: &mut ExplainOptions, value: Value) -> Result<(), InvalidOption> {
        let shown = value.to_string();
        (self.set)(options, value).map_err(|e| {
            InvalidOption::says(
                self.name,
                format!(" cannot be {shown}: {}", expected(self, &e)),
            )
        })?;
        self.check(options)
    }

    /// Whether the option's value in `options` is in its range.
    pub fn check(&self, options: &ExplainOptions) -> Result<(), InvalidOption> {
        let Some(x) = (self.number)(options) else {
            return Ok(());
        };
        let within = self.min.is_none_or(|m| x >= m) && self.max.is_none_or(|m| x <= m);
        if within {
            return Ok(());
        }
        let text = match (self.min, self.max) {
            (Some(lo), Some(hi)) => format!(" must be between {lo} and {hi}"),
            (Some(lo), None) => format!(" must be at least {lo}"),
            (None, Some(hi)) => format!(" must be at most {hi}"),
            (None, None) => unreachable!("a value out of no range"),
        };
        Err(InvalidOption::new(
            self.name,
            Phrase::option(self.name)
                .then(format!(" {}", shown(x)))
                .then(text),
        ))
    }

    /// The flag: `--top-k`.
    pub fn flag(&self) -> String {
        super::Naming::Flag.name(self.name)
    }

    /// The help as one line (its doc comment's lines joined).
    pub fn summary(&self) -> String {
        self.help.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// A number as a user wrote it: `3`, not `3.0`.
fn shown(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

/// What a value of the option is, after serde's own message.
fn expected(spec: &OptionSpec, e: &serde_json::Error) -> String {
    let what = match spec.kind {
        Kind::Integer => "a non-negative integer",
        Kind::Number => "a number",
        Kind::Boolean => "true or false",
        Kind::Named => return e.to_string(),
    };
    if spec.nullable {
        format!("expected {what} or null")
    } else {
        format!("expected {what}")
    }
}

/// An optional bound of a range, as an `Option<f64>`.
macro_rules! bound {
    () => {
        None
    };
    ($x:expr) => {
        Some($x as f64)
    };
}
pub(super) use bound;

/// Defines [`ExplainOptions`], its `Default` and the [`OPTIONS`](super::OPTIONS) table from one
/// list: `/// help`, `name: Type = default, Scope` and an optional `min .. max` range.
macro_rules! options {
    ($(
        $(#[doc = $doc:literal])+
        $name:ident: $ty:ty = $default:expr, $scope:ident $(, min $min:expr)? $(, max $max:expr)?;
    )*) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct ExplainOptions {
            $( $(#[doc = $doc])+ pub $name: $ty, )*
        }

        impl Default for ExplainOptions {
            fn default() -> Self {
                Self { $( $name: $default, )* }
            }
        }

        /// The options' names, as constants (for [`Phrase`](super::Phrase)s, checked by the
        /// compiler).
        #[allow(non_upper_case_globals)]
        pub mod name {
            $( pub const $name: &str = stringify!($name); )*
        }

        /// Every option, in the order of [`ExplainOptions`]' fields.
        pub static OPTIONS: &[$crate::explain::options::schema::OptionSpec] = &[$(
            $crate::explain::options::schema::OptionSpec {
                name: stringify!($name),
                help: concat!($($doc, "\n"),+),
                scope: $crate::explain::options::schema::Scope::$scope,
                kind: <$ty as $crate::explain::options::schema::OptionValue>::KIND,
                nullable: <$ty as $crate::explain::options::schema::OptionValue>::NULLABLE,
                min: $crate::explain::options::schema::bound!($($min)?),
                max: $crate::explain::options::schema::bound!($($max)?),
                get: |o| serde_json::to_value(&o.$name).expect("an option's value serialises"),
                set: |o, v| {
                    o.$name = serde_json::from_value(v)?;
                    Ok(())
                },
                number: |o| $crate::explain::options::schema::OptionValue::number(&o.$name),
                #[cfg(feature = "cli")]
                flag: |arg| arg.value_parser(clap::value_parser!(
                    <$ty as $crate::explain::options::schema::OptionValue>::Flag
                )),
                #[cfg(feature = "cli")]
                from_flag: |matches, o| {
                    type Flag = <$ty as $crate::explain::options::schema::OptionValue>::Flag;
                    if let Some(v) = matches.get_one::<Flag>(stringify!($name)) {
                        o.$name = <$ty as $crate::explain::options::schema::OptionValue>::from_flag(
                            v.clone(),
                        );
                    }
                },
                #[cfg(feature = "serve")]
                named_schema: <$ty as $crate::explain::options::schema::OptionValue>::named_schema,
            },
        )*];
    };
}
pub(super) use options;
