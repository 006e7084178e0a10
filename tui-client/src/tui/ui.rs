//! Drawing: a pure function of [`App`] onto a ratatui frame.

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use ratatui::Frame;

use crate::client::ConnState;
use crate::tui::app::{App, Entry, Focus, Status};
use crate::tui::lines::{side_widths, wrap_parts, ChatLine};
use crate::tui::text::width;

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let [main, input, status] = Layout::vertical([
        Constraint::Min(3),
        Constraint::Length(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let (rooms_w, members_w) = side_widths(main.width);
    let [rooms, chat, members] = Layout::horizontal([
        Constraint::Length(rooms_w),
        Constraint::Min(10),
        Constraint::Length(members_w),
    ])
    .areas(main);

    if rooms_w > 0 || matches!(app.focus, Focus::Rooms { .. }) {
        // The selector takes the chat pane's place on narrow screens.
        let area = if rooms_w > 0 { rooms } else { chat };
        draw_rooms(frame, app, area);
    }
    if rooms_w > 0 || app.focus == Focus::Input {
        draw_chat(frame, app, chat);
    }
    if members_w > 0 {
        draw_members(frame, app, members);
    }
    draw_input(frame, app, input);
    draw_status(frame, app, status);
}

/// Widths of the room and member lists for a terminal `total` cells wide.
fn draw_rooms(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (entries, selected, title) = match &app.focus {
        Focus::Rooms { selected, .. } => (
            app.selector_entries(),
            Some(*selected),
            " Rooms: pick or type ",
        ),
        Focus::Input => (app.room_overview(), None, " Rooms "),
    };
    let current = app.current_room().map(|r| r.name.as_str());
    let inner = usize::from(area.width.saturating_sub(2));
    let items: Vec<ListItem<'_>> = entries
        .iter()
        .map(|entry| room_item(app, entry, current == Some(entry.name.as_str()), inner))
        .collect();
    let border = if selected.is_some() {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    };
    let list = List::new(items)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(border)
                .title(title),
        )
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(list, area, &mut state);
}

/// `● name (3)      5`: joined marker, name, unread count (`@` when I am
/// mentioned), and the member count right-aligned.
fn room_item<'a>(app: &App, entry: &'a Entry, is_current: bool, inner: usize) -> ListItem<'a> {
    if entry.create {
        return ListItem::new(Line::from(vec![
            Span::styled("+ ", Style::new().fg(Color::Green)),
            Span::raw(format!("create {}", entry.name)),
        ]));
    }
    let joined = app.rooms.iter().find(|r| r.name == entry.name);
    let marker = if entry.joined { "● " } else { "  " };
    let mut name_style = Style::new();
    if is_current {
        name_style = name_style.add_modifier(Modifier::BOLD).fg(Color::Cyan);
    }
    let mut spans = vec![
        Span::styled(marker, Style::new().fg(Color::Green)),
        Span::styled(entry.name.clone(), name_style),
    ];
    if let Some(room) = joined.filter(|r| r.unread > 0) {
        let style = if room.mentioned {
            Style::new().fg(Color::Magenta).add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::BOLD)
        };
        let mark = if room.mentioned { "@" } else { "" };
        spans.push(Span::styled(format!(" ({mark}{})", room.unread), style));
    }
    if let Some(n) = entry.members {
        let count = format!(" {n}");
        let used: usize = spans.iter().map(|s| width(&s.content)).sum();
        let gap = inner.saturating_sub(used + width(&count));
        spans.push(Span::raw(" ".repeat(gap)));
        spans.push(Span::styled(count, Style::new().fg(Color::DarkGray)));
    }
    ListItem::new(Line::from(spans))
}

fn draw_chat(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (title, lines, scroll, marker) = match app.current_room() {
        Some(room) => (
            format!(" {} ", room.name),
            room.lines.as_slice(),
            room.scroll,
            room.marker,
        ),
        None => (" chat-tui ".to_owned(), app.lobby.as_slice(), 0, None),
    };
    let inner_width = usize::from(area.width.saturating_sub(2));
    let height = usize::from(area.height.saturating_sub(2));
    let mut rendered: Vec<Line<'_>> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some((_, count)) = marker.filter(|(at, _)| *at == i) {
            rendered.push(marker_line(count, inner_width));
        }
        rendered.extend(render_line(line, inner_width));
    }
    let scroll = scroll.min(rendered.len().saturating_sub(height));
    let end = rendered.len() - scroll;
    let start = end.saturating_sub(height);
    let mut block = Block::default().borders(Borders::ALL).title(title);
    if scroll > 0 {
        block = block.title_bottom(Line::from(format!(" ↓ {scroll} more lines ")).right_aligned());
    }
    // Chat grows upwards from the input line, as people expect.
    let padding = height.saturating_sub(end - start);
    let visible: Vec<Line<'_>> = std::iter::repeat_n(Line::default(), padding)
        .chain(rendered[start..end].iter().cloned())
        .collect();
    frame.render_widget(Paragraph::new(visible).block(block), area);
}

/// `──── 3 new messages ────`, across the pane.
fn marker_line(count: usize, pane: usize) -> Line<'static> {
    let noun = if count == 1 { "message" } else { "messages" };
    let label = format!(" {count} new {noun} ");
    let side = pane.saturating_sub(width(&label)) / 2;
    let rule = "─".repeat(side);
    Line::styled(
        format!("{rule}{label}{rule}"),
        Style::new().fg(Color::Magenta),
    )
}

/// One chat line as wrapped screen lines: `HH:MM name: text`, continuation
/// lines indented under the text.
fn render_line(line: &ChatLine, pane: usize) -> Vec<Line<'static>> {
    let (indent, parts) = wrap_parts(line, pane);
    match line {
        ChatLine::Message {
            time,
            from,
            own,
            mention,
            ..
        } => {
            let name_style = if *own {
                Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
            } else {
                Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
            };
            let text_style = if *mention {
                Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)
            } else {
                Style::new()
            };
            parts
                .into_iter()
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        Line::from(vec![
                            Span::styled(format!("{time} "), Style::new().fg(Color::DarkGray)),
                            Span::styled(format!("{from}: "), name_style),
                            Span::styled(part, text_style),
                        ])
                    } else {
                        Line::from(vec![
                            Span::raw(" ".repeat(indent)),
                            Span::styled(part, text_style),
                        ])
                    }
                })
                .collect()
        }
        ChatLine::Info(_) => styled(
            parts,
            Style::new()
                .fg(Color::DarkGray)
                .add_modifier(Modifier::ITALIC),
        ),
        ChatLine::Error(_) => styled(parts, Style::new().fg(Color::Red)),
    }
}

fn styled(parts: Vec<String>, style: Style) -> Vec<Line<'static>> {
    parts.into_iter().map(|l| Line::styled(l, style)).collect()
}

fn draw_members(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let items: Vec<ListItem<'_>> = app
        .current_room()
        .map(|room| {
            room.members
                .iter()
                .map(|m| {
                    let style = if *m == app.me {
                        Style::new().fg(Color::Green)
                    } else {
                        Style::new()
                    };
                    ListItem::new(Span::styled(m.clone(), style))
                })
                .chain((room.unlisted > 0).then(|| {
                    ListItem::new(Span::styled(
                        format!("and {} more", room.unlisted),
                        Style::new().fg(Color::DarkGray),
                    ))
                }))
                .collect()
        })
        .unwrap_or_default();
    let title = match app.current_room() {
        Some(room) => format!(" Members ({}) ", room.members.len() + room.unlisted),
        None => " Members ".to_owned(),
    };
    frame.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn draw_input(frame: &mut Frame<'_>, app: &App, area: Rect) {
    let (title, editor) = match &app.focus {
        Focus::Rooms { filter, .. } => (
            " Join or create room (Enter, Esc to go back) ".to_owned(),
            filter,
        ),
        Focus::Input => {
            let title = match app.current_room() {
                Some(room) => format!(" Message {} ", room.name),
                None => " /join NAME to start, Esc to pick a room ".to_owned(),
            };
            (title, &app.input)
        }
    };
    let field = usize::from(area.width.saturating_sub(2));
    let (shown, cursor_x) = editor.view(field);
    frame.render_widget(
        Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
    let x = area.x
        + 1
        + u16::try_from(cursor_x)
            .unwrap_or(u16::MAX)
            .min(area.width.saturating_sub(2));
    frame.set_cursor_position(Position::new(x, area.y + 1));
}

fn draw_status(frame: &mut Frame<'_>, app: &App, area: Rect) {
    // Narrow screens drop the server address, keeping the state readable.
    let server = if area.width >= 80 {
        format!(" to {}", app.server)
    } else {
        String::new()
    };
    let (symbol, text, color) = match &app.status {
        Status::Conn(ConnState::Connecting) => ("◌", format!("connecting{server}"), Color::Yellow),
        Status::Conn(ConnState::Connected) => (
            "●",
            format!("connected{server} as {}", app.me),
            Color::Green,
        ),
        Status::Conn(ConnState::Reconnecting {
            attempt,
            delay,
            reason,
        }) => (
            "◌",
            format!(
                "reconnecting (attempt {attempt}, in {:.1}s): {reason}",
                delay.as_secs_f64()
            ),
            Color::Yellow,
        ),
        Status::Failed(reason) => ("✖", format!("disconnected: {reason}"), Color::Red),
    };
    let mut spans = vec![
        Span::styled(
            format!(" {symbol} "),
            Style::new().fg(color).add_modifier(Modifier::BOLD),
        ),
        Span::styled(text, Style::new().fg(color)),
    ];
    let hint = app
        .note
        .clone()
        .unwrap_or_else(|| "Esc rooms · Tab complete · /help".to_owned());
    let used: usize = spans.iter().map(|s| width(&s.content)).sum();
    let room_left = usize::from(area.width).saturating_sub(used + 3);
    if room_left > 8 {
        let hint: String = hint.chars().take(room_left).collect();
        spans.push(Span::styled(
            format!("   {hint}"),
            Style::new().fg(Color::DarkGray),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
