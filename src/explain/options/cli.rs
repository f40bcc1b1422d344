//! The options as command-line flags: `--top-k 3` for `top_k`, each with its help, default
//! and values from [`OPTIONS`].

use std::marker::PhantomData;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches};
use serde_json::Value;

use super::schema::{Kind, OptionSpec};
use super::{ExplainOptions, OPTIONS};

/// Which options a command takes as flags.
pub trait Flags: Send + Sync + 'static {
    /// Options the command leaves out (it has its own flag of that name, or takes the option
    /// another way).
    const LEFT_OUT: &'static [&'static str];
}

/// [`ExplainOptions`] read from flags: the defaults, with the flags given over them.
#[derive(Debug, Clone)]
pub struct OptionArgs<F> {
    pub options: ExplainOptions,
    flags: PhantomData<F>,
}

fn taken<F: Flags>() -> impl Iterator<Item = &'static OptionSpec> {
    OPTIONS.iter().filter(|s| !F::LEFT_OUT.contains(&s.name))
}

/// The flag of one option. A flag's default is the option's, so the help shows it; a boolean
/// flag alone means `true` (`--seed-compat`).
fn arg(spec: &'static OptionSpec) -> Arg {
    // Flags live as long as the program; an option's flag name is made once per command.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut arg = Arg::new(spec.name)
        .long(leak(spec.name.replace('_', "-")))
        .value_name(leak(spec.name.to_uppercase()))
        .help(spec.summary());
    arg = (spec.flag)(arg);
    if let Some(default) = flag_value(&spec.default_value()) {
        arg = arg.default_value(leak(default));
    }
    if spec.kind == Kind::Boolean {
        arg = arg
            .num_args(0..=1)
            .default_missing_value("true")
            .hide_default_value(true)
            .hide_possible_values(true);
    }
    arg
}

/// An option's value as a flag's: `best`, `50`; none for null (an "auto" left unset).
pub fn flag_value(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl<F: Flags> FromArgMatches for OptionArgs<F> {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self {
            options: ExplainOptions::default(),
            flags: PhantomData,
        };
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for spec in taken::<F>() {
            (spec.from_flag)(matches, &mut self.options);
        }
        Ok(())
    }
}

impl<F: Flags> Args for OptionArgs<F> {
    fn augment_args(cmd: Command) -> Command {
        taken::<F>().fold(cmd, |cmd, spec| cmd.arg(arg(spec)))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}
