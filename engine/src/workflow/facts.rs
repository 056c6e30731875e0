//! What the configuration alone says about the data flowing through the graph — how many classes each output has,
//! where some step fixes it ([`Step::known_classes`](crate::steps::Step::known_classes)) — so that `validate` finds
//! mismatches (an `infer`'s `top_k` above the model's classes) without running anything.

use std::cell::RefCell;
use std::collections::HashMap;

use super::{StepDecl, Workflow};
use crate::config::Located;

pub(super) fn check(wf: &Workflow, errors: &mut Vec<Located>) {
    let facts = Facts {
        wf,
        index: wf.steps.iter().enumerate().map(|(i, s)| (s.id.as_str(), i)).collect(),
        memo: RefCell::default(),
    };
    for decl in &wf.steps {
        let problems = decl.step.check_known_classes(&|role| facts.input_classes(decl, role));
        if let Err(located) = crate::steps::check_fields(&decl.node, problems) {
            errors.extend(located.into_iter().map(|mut l| {
                l.message = format!("step `{}`: {}", decl.id, l.message);
                l
            }));
        }
    }
}

struct Facts<'a> {
    wf: &'a Workflow,
    index: HashMap<&'a str, usize>,
    /// (step, output) → its classes; `None` while being worked out, so a cycle (reported elsewhere) ends.
    memo: RefCell<HashMap<(usize, String), Option<i64>>>,
}

impl Facts<'_> {
    /// The known classes of what `decl`'s input `role` refers to.
    fn input_classes(&self, decl: &StepDecl, role: &str) -> Option<i64> {
        let input = decl.step.inputs().into_iter().find(|i| i.role == role)?;
        let target = *self.index.get(input.reference.step.as_str())?;
        let output = self.wf.resolve_output(target, input.reference.output.as_deref())?;
        self.classes(target, &output.name)
    }

    fn classes(&self, step: usize, output: &str) -> Option<i64> {
        let key = (step, output.to_string());
        if let Some(known) = self.memo.borrow().get(&key) {
            return *known;
        }
        self.memo.borrow_mut().insert(key.clone(), None);
        let decl = &self.wf.steps[step];
        let known = decl.step.known_classes(output, &|role| self.input_classes(decl, role));
        self.memo.borrow_mut().insert(key, known);
        known
    }
}
