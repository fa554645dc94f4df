//! Chat templates: the Jinja program a model ships (in `tokenizer_config.json`
//! or GGUF metadata) that turns a list of messages into the prompt text the
//! model was trained on.
//!
//! Rendered with minijinja plus its Python-compatibility methods
//! (`.strip()`, `.startswith()`, ...), which Hugging Face templates use, and
//! the `raise_exception` function they call to reject bad conversations.

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

use crate::error::{Error, Result};

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts the
    /// template may reference.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> std::result::Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::Config(format!("the chat template does not compile: {e}")))?;
        Ok(Self {
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// The prompt for `messages`, ending with the assistant's turn opener when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Config(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token,
                eos_token => self.eos_token,
            })
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidOperation => Error::InvalidInput(
                    e.detail()
                        .unwrap_or("the chat template rejected the messages")
                        .to_owned(),
                ),
                _ => Error::InvalidInput(format!("the chat template failed: {e}")),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'].strip() + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: text.into(),
        }
    }

    #[test]
    fn chatml_renders_like_transformers() {
        let t = ChatTemplate::new(CHATML, "<s>", "</s>").unwrap();
        assert_eq!(
            t.render(&[user(" Hi ")], true).unwrap(),
            "<|im_start|>system\nYou are helpful<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(
            !t.render(&[user("Hi")], false)
                .unwrap()
                .ends_with("assistant\n")
        );
    }

    #[test]
    fn raise_exception_is_an_input_error_with_the_templates_message() {
        let t = ChatTemplate::new(
            "{% if messages[0]['role'] == 'assistant' %}{{ raise_exception('Conversation must start with a user') }}{% endif %}{{ bos_token }}",
            "<s>",
            "</s>",
        )
        .unwrap();
        let bad = ChatMessage {
            role: "assistant".into(),
            content: "x".into(),
        };
        match t.render(&[bad], true) {
            Err(Error::InvalidInput(m)) => assert_eq!(m, "Conversation must start with a user"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(t.render(&[user("x")], true).unwrap(), "<s>");
    }

    #[test]
    fn a_broken_template_is_a_config_error() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(Error::Config(_))
        ));
    }
}
