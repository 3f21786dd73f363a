//! The model of a `#[derive(Store)]` input, parsed and validated with every error's span.

use std::time::Duration;

use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, Ident, LitStr, Type};

/// A validated input.
pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a syn::Generics,
    pub(crate) name: String,
    pub(crate) fields: Vec<Field>,
    pub(crate) key: Key,
    pub(crate) ttl: Option<Duration>,
    pub(crate) encrypt: bool,
    /// A module with `encode` and `decode` functions that write the record in a backend, in
    /// place of the JSON envelope.
    pub(crate) codec: Option<syn::Path>,
    /// Indexes into `fields`.
    pub(crate) indexes: Vec<usize>,
}

/// The record's key: literal text and field placeholders (indexes into the fields), in order.
pub(crate) struct Key {
    pub(crate) parts: Vec<KeyPart>,
}

pub(crate) enum KeyPart {
    Text(String),
    Field(usize),
}

pub(crate) struct Field {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
}

/// Collects errors so that every problem is reported at once.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

struct FieldAttrs {
    key: bool,
    index: bool,
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let named = match &input.data {
            Data::Struct(data) => match &data.fields {
                Fields::Named(named) => named,
                other => return Err(syn::Error::new(other.span(), "Store needs a struct with named fields")),
            },
            _ => return Err(syn::Error::new(input.ident.span(), "Store can only be derived for structs")),
        };
        if let Some(lifetime) = input.generics.lifetimes().next() {
            errors.push(syn::Error::new(lifetime.span(), "Store records cannot borrow: remove the lifetime parameter"));
        }

        let mut key_template: Option<LitStr> = None;
        let mut ttl: Option<(LitStr, Duration)> = None;
        let mut encrypt: Option<Ident> = None;
        let mut name: Option<LitStr> = None;
        let mut codec: Option<syn::Path> = None;
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("store")) {
            let parsed = attr.parse_nested_meta(|meta| {
                let Some(ident) = meta.path.get_ident().cloned() else {
                    return Err(meta.error("unknown store attribute"));
                };
                match ident.to_string().as_str() {
                    "key" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if key_template.replace(lit).is_some() {
                            errors.push(syn::Error::new(ident.span(), "`key` is given twice"));
                        }
                    }
                    "ttl" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        match humantime::parse_duration(&lit.value()) {
                            Ok(d) if d.is_zero() => errors.push(syn::Error::new(
                                lit.span(),
                                "ttl must be longer than zero; leave it out for no expiry",
                            )),
                            Ok(d) => {
                                if ttl.replace((lit, d)).is_some() {
                                    errors.push(syn::Error::new(ident.span(), "`ttl` is given twice"));
                                }
                            }
                            Err(e) => errors.push(syn::Error::new(
                                lit.span(),
                                format!("invalid ttl: {e} (try \"90s\", \"30m\" or \"7d\")"),
                            )),
                        }
                    }
                    "encrypt" => {
                        if encrypt.replace(ident.clone()).is_some() {
                            errors.push(syn::Error::new(ident.span(), "`encrypt` is given twice"));
                        }
                    }
                    "name" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if name.replace(lit).is_some() {
                            errors.push(syn::Error::new(ident.span(), "`name` is given twice"));
                        }
                    }
                    "codec" => {
                        let path: syn::Path = meta.value()?.parse()?;
                        if codec.replace(path).is_some() {
                            errors.push(syn::Error::new(ident.span(), "`codec` is given twice"));
                        }
                    }
                    _ => {
                        errors.push(syn::Error::new(
                            ident.span(),
                            format!("unknown store attribute `{ident}`; expected key, ttl, encrypt, name or codec"),
                        ));
                        // Skip its value, so that the one error is the only one.
                        if meta.input.peek(syn::Token![=]) {
                            let _: syn::Expr = meta.value()?.parse()?;
                        }
                    }
                }
                Ok(())
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }

        let mut fields = Vec::new();
        let mut key_fields = Vec::new();
        let mut index_fields = Vec::new();
        for (i, field) in named.named.iter().enumerate() {
            let ident = field.ident.clone().expect("named fields have names");
            let attrs = field_attrs(field, &mut errors);
            if attrs.key {
                key_fields.push(i);
            }
            if attrs.index {
                index_fields.push(i);
            }
            fields.push(Field { ident, ty: field.ty.clone() });
        }

        let key = match (&key_template, key_fields.as_slice()) {
            (Some(template), []) => parse_template(template, &fields, &mut errors),
            (Some(template), [_, ..]) => {
                errors.push(syn::Error::new(
                    template.span(),
                    "give the key either as a template or as #[store(key)] on a field, not both",
                ));
                Key { parts: vec![] }
            }
            (None, [field]) => {
                Key { parts: vec![KeyPart::Text(format!("{}:", name_of(input, &name))), KeyPart::Field(*field)] }
            }
            (None, [_, second, ..]) => {
                errors.push(syn::Error::new(
                    fields[*second].ident.span(),
                    "only one field can be #[store(key)]; use a key template for several",
                ));
                Key { parts: vec![] }
            }
            (None, []) => {
                errors.push(syn::Error::new(
                    input.ident.span(),
                    "a Store needs a key: add #[store(key = \"prefix:{field}\")] or mark a field #[store(key)]",
                ));
                Key { parts: vec![] }
            }
        };
        errors.finish()?;
        Ok(Self {
            ident: &input.ident,
            generics: &input.generics,
            name: name_of(input, &name),
            fields,
            key,
            ttl: ttl.map(|(_, d)| d),
            encrypt: encrypt.is_some(),
            codec,
            indexes: index_fields,
        })
    }
}

fn name_of(input: &DeriveInput, name: &Option<LitStr>) -> String {
    name.as_ref().map_or_else(|| input.ident.to_string(), LitStr::value)
}

fn field_attrs(field: &syn::Field, errors: &mut Errors) -> FieldAttrs {
    let mut attrs = FieldAttrs { key: false, index: false };
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("store")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("key") {
                if std::mem::replace(&mut attrs.key, true) {
                    errors.push(meta.error("`key` is given twice"));
                }
            } else if meta.path.is_ident("index") {
                if std::mem::replace(&mut attrs.index, true) {
                    errors.push(meta.error("`index` is given twice"));
                }
            } else {
                errors.push(meta.error("unknown store field attribute; expected key or index"));
                if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
            }
            Ok(())
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    attrs
}

fn parse_template(template: &LitStr, fields: &[Field], errors: &mut Errors) -> Key {
    let text = template.value();
    let mut parts = Vec::new();
    let mut unknown = false;
    let mut rest = text.as_str();
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(KeyPart::Text(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            errors.push(syn::Error::new(template.span(), "unclosed `{` in the key template"));
            return Key { parts };
        };
        let field_name = &rest[open + 1..open + close];
        match fields.iter().position(|f| f.ident == field_name) {
            Some(i) => parts.push(KeyPart::Field(i)),
            None => {
                unknown = true;
                errors.push(syn::Error::new(
                    template.span(),
                    format!("the key template names `{field_name}`, which is not a field of this struct"),
                ));
            }
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        errors.push(syn::Error::new(template.span(), "unmatched `}` in the key template"));
    }
    if !rest.is_empty() {
        parts.push(KeyPart::Text(rest.to_owned()));
    }
    if !unknown && !parts.iter().any(|p| matches!(p, KeyPart::Field(_))) {
        errors.push(syn::Error::new(
            template.span(),
            "the key template names no field: every record would share one key",
        ));
    }
    Key { parts }
}
