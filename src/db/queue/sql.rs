//! A small raw-SQL builder for the queue's statements: placeholders numbered for the engine.

use sea_orm::{DbBackend, Statement, Value};

/// Raw SQL with its bound values, placeholders numbered for the engine.
pub(super) struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub(super) fn new(backend: DbBackend, text: &str) -> Sql {
        Sql {
            backend,
            text: text.to_owned(),
            values: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(super) fn bind(&mut self, value: impl Into<Value>) -> &mut Sql {
        self.values.push(value.into());
        match self.backend {
            DbBackend::Postgres => {
                let n = self.values.len();
                self.text.push_str(&format!("${n}"));
            }
            _ => self.text.push('?'),
        }
        self
    }

    /// Appends `(v1, v2, …)`.
    pub(super) fn bind_list<T: Into<Value> + Clone>(&mut self, items: &[T]) -> &mut Sql {
        self.push("(");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(item.clone());
        }
        self.push(")")
    }

    pub(super) fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}
