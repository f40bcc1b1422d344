//! Option errors as data: which option is at fault, and a message whose option names each
//! front writes its own way (`--top-k`, `top_k`), so that no front rewrites another's text.

use std::fmt;

/// How a front names an option in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// The command line's flags: `--top-k`.
    Flag,
    /// The option's name, as the server's `options` fields and Python's keywords: `top_k`.
    Name,
}

impl Naming {
    pub fn name(self, option: &str) -> String {
        match self {
            Self::Flag => format!("--{}", option.replace('_', "-")),
            Self::Name => option.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Option(&'static str),
}

/// A message that may name options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Phrase(Vec<Piece>);

impl Phrase {
    /// A phrase that starts with an option's name.
    pub fn option(name: &'static str) -> Self {
        Self(vec![Piece::Option(name)])
    }

    pub fn text(text: impl fmt::Display) -> Self {
        Self(vec![Piece::Text(text.to_string())])
    }

    /// This phrase, then `text`.
    pub fn then(mut self, text: impl fmt::Display) -> Self {
        self.0.push(Piece::Text(text.to_string()));
        self
    }

    /// This phrase, then an option's name.
    pub fn then_option(mut self, name: &'static str) -> Self {
        self.0.push(Piece::Option(name));
        self
    }

    /// This phrase, then `other`.
    pub fn append(mut self, other: &Phrase) -> Self {
        self.0.extend(other.0.iter().cloned());
        self
    }

    /// The first option the phrase names.
    pub fn first_option(&self) -> Option<&'static str> {
        self.0.iter().find_map(|piece| match piece {
            Piece::Option(name) => Some(*name),
            Piece::Text(_) => None,
        })
    }

    pub fn render(&self, naming: Naming) -> String {
        self.0
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.clone(),
                Piece::Option(name) => naming.name(name),
            })
            .collect()
    }
}

/// Written with options by name, as the library's own fields are.
impl fmt::Display for Phrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Naming::Name))
    }
}

/// An option whose value is wrong, alone, with the others, or for the model.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidOption {
    /// The option at fault (one of [`super::OPTIONS`], or a front's own, such as `device`).
    pub option: &'static str,
    /// Why, usually starting with the option's name.
    pub message: Phrase,
}

impl InvalidOption {
    pub fn new(option: &'static str, message: Phrase) -> Self {
        Self { option, message }
    }

    /// `option` followed by `text`: `top_k must be positive`.
    pub fn says(option: &'static str, text: impl fmt::Display) -> Self {
        Self::new(option, Phrase::option(option).then(text))
    }
}

impl std::error::Error for InvalidOption {}

impl fmt::Display for InvalidOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.message.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_front_names_options_its_own_way() {
        let e = InvalidOption::new(
            "top_k",
            Phrase::option("top_k")
                .then(" takes ")
                .then_option("span")
                .then(" best"),
        );
        assert_eq!(e.message.render(Naming::Flag), "--top-k takes --span best");
        assert_eq!(e.to_string(), "top_k takes span best");
    }
}
