//! Personal names, each as a (Cyrillic, Latin) pair whose Latin form is exactly what ingest's
//! name normalisation makes of the Cyrillic one (the passport-style romanisation in
//! `ctstats_ingest::identity`), so one person spelled once in each script links.
//!
//! Within each table the Latin forms are distinct, and no given name equals a family name, so
//! distinct (given name, family name) index pairs always normalise to distinct names.

/// Where a name is common: Central Asia, or Eastern Europe (Russian, Ukrainian, Moldovan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Region {
    CentralAsia,
    EasternEurope,
}

use Region::{CentralAsia as CA, EasternEurope as EE};

/// A given name: Cyrillic, Latin, region.
pub(crate) type GivenName = (&'static str, &'static str, Region);

/// A family name: male Cyrillic, male Latin, female Cyrillic, female Latin, region.
pub(crate) type FamilyName = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Region,
);

pub(crate) const FEMALE: &[GivenName] = &[
    ("Айгуль", "Aigul", CA),
    ("Жылдыз", "Zhyldyz", CA),
    ("Гульнара", "Gulnara", CA),
    ("Нургуль", "Nurgul", CA),
    ("Айжан", "Aizhan", CA),
    ("Динара", "Dinara", CA),
    ("Мадина", "Madina", CA),
    ("Зарина", "Zarina", CA),
    ("Шахноза", "Shakhnoza", CA),
    ("Дилноза", "Dilnoza", CA),
    ("Нилуфар", "Nilufar", CA),
    ("Гулчехра", "Gulchekhra", CA),
    ("Малика", "Malika", CA),
    ("Фарангис", "Farangis", CA),
    ("Ақмарал", "Akmaral", CA),
    ("Әсел", "Asel", CA),
    ("Гүлнұр", "Gulnur", CA),
    ("Жанар", "Zhanar", CA),
    ("Айнур", "Ainur", CA),
    ("Чолпон", "Cholpon", CA),
    ("Бермет", "Bermet", CA),
    ("Мөлдір", "Moldir", CA),
    ("Сабина", "Sabina", CA),
    ("Камила", "Kamila", CA),
    ("Мохира", "Mokhira", CA),
    ("Зульфия", "Zulfiya", CA),
    ("Феруза", "Feruza", CA),
    ("Айпери", "Aiperi", CA),
    ("Назгуль", "Nazgul", CA),
    ("Тахмина", "Takhmina", CA),
    ("Мария", "Mariya", EE),
    ("Анна", "Anna", EE),
    ("Елена", "Elena", EE),
    ("Ольга", "Olga", EE),
    ("Наталья", "Natalya", EE),
    ("Татьяна", "Tatyana", EE),
    ("Ирина", "Irina", EE),
    ("Светлана", "Svetlana", EE),
    ("Екатерина", "Ekaterina", EE),
    ("Юлия", "Yuliya", EE),
    ("Оксана", "Oksana", EE),
    ("Людмила", "Lyudmila", EE),
    ("Виктория", "Viktoriya", EE),
    ("Кристина", "Kristina", EE),
    ("Алина", "Alina", EE),
    ("Мариана", "Mariana", EE),
    ("Корина", "Korina", EE),
    ("Галина", "Galina", EE),
    ("Валентина", "Valentina", EE),
    ("Дарья", "Darya", EE),
    ("Анастасия", "Anastasiya", EE),
    ("Ксения", "Kseniya", EE),
    ("Надежда", "Nadezhda", EE),
    ("Лилия", "Liliya", EE),
];

pub(crate) const MALE: &[GivenName] = &[
    ("Азамат", "Azamat", CA),
    ("Бакыт", "Bakyt", CA),
    ("Нурлан", "Nurlan", CA),
    ("Эркин", "Erkin", CA),
    ("Улан", "Ulan", CA),
    ("Айбек", "Aibek", CA),
    ("Тимур", "Timur", CA),
    ("Бахтияр", "Bakhtiyar", CA),
    ("Жасур", "Zhasur", CA),
    ("Шерзод", "Sherzod", CA),
    ("Фаррух", "Farrukh", CA),
    ("Дилшод", "Dilshod", CA),
    ("Рустам", "Rustam", CA),
    ("Фаридун", "Faridun", CA),
    ("Джамшед", "Dzhamshed", CA),
    ("Сухроб", "Sukhrob", CA),
    ("Ерлан", "Erlan", CA),
    ("Қайрат", "Kairat", CA),
    ("Дәурен", "Dauren", CA),
    ("Нұрлыбек", "Nurlybek", CA),
    ("Серік", "Serik", CA),
    ("Мирлан", "Mirlan", CA),
    ("Канат", "Kanat", CA),
    ("Бекзат", "Bekzat", CA),
    ("Улугбек", "Ulugbek", CA),
    ("Фирдавс", "Firdavs", CA),
    ("Абдулло", "Abdullo", CA),
    ("Алишер", "Alisher", CA),
    ("Жоомарт", "Zhoomart", CA),
    ("Эмиль", "Emil", CA),
    ("Алексей", "Aleksei", EE),
    ("Дмитрий", "Dmitrii", EE),
    ("Сергей", "Sergei", EE),
    ("Андрей", "Andrei", EE),
    ("Иван", "Ivan", EE),
    ("Николай", "Nikolai", EE),
    ("Владимир", "Vladimir", EE),
    ("Михаил", "Mikhail", EE),
    ("Игорь", "Igor", EE),
    ("Виктор", "Viktor", EE),
    ("Ион", "Ion", EE),
    ("Василий", "Vasilii", EE),
    ("Тарас", "Taras", EE),
    ("Богдан", "Bogdan", EE),
    ("Олег", "Oleg", EE),
    ("Руслан", "Ruslan", EE),
    ("Юрий", "Yurii", EE),
    ("Максим", "Maksim", EE),
    ("Артём", "Artem", EE),
    ("Роман", "Roman", EE),
    ("Вадим", "Vadim", EE),
    ("Георгий", "Georgii", EE),
    ("Петру", "Petru", EE),
    ("Думитру", "Dumitru", EE),
];

pub(crate) const FAMILY: &[FamilyName] = &[
    ("Асанов", "Asanov", "Асанова", "Asanova", CA),
    ("Садыков", "Sadykov", "Садыкова", "Sadykova", CA),
    ("Абдуллаев", "Abdullaev", "Абдуллаева", "Abdullaeva", CA),
    ("Юсупов", "Yusupov", "Юсупова", "Yusupova", CA),
    ("Каримов", "Karimov", "Каримова", "Karimova", CA),
    ("Рахимов", "Rakhimov", "Рахимова", "Rakhimova", CA),
    ("Исмаилов", "Ismailov", "Исмаилова", "Ismailova", CA),
    ("Назаров", "Nazarov", "Назарова", "Nazarova", CA),
    ("Шарипов", "Sharipov", "Шарипова", "Sharipova", CA),
    ("Сафаров", "Safarov", "Сафарова", "Safarova", CA),
    ("Холматов", "Kholmatov", "Холматова", "Kholmatova", CA),
    ("Жумабаев", "Zhumabaev", "Жумабаева", "Zhumabaeva", CA),
    ("Мамбетов", "Mambetov", "Мамбетова", "Mambetova", CA),
    ("Осмонов", "Osmonov", "Осмонова", "Osmonova", CA),
    ("Бекмуратов", "Bekmuratov", "Бекмуратова", "Bekmuratova", CA),
    ("Султанов", "Sultanov", "Султанова", "Sultanova", CA),
    ("Ахмедов", "Akhmedov", "Ахмедова", "Akhmedova", CA),
    ("Турсунов", "Tursunov", "Турсунова", "Tursunova", CA),
    ("Нурматов", "Nurmatov", "Нурматова", "Nurmatova", CA),
    ("Омаров", "Omarov", "Омарова", "Omarova", CA),
    ("Қасымов", "Kasymov", "Қасымова", "Kasymova", CA),
    ("Оразбаев", "Orazbaev", "Оразбаева", "Orazbaeva", CA),
    ("Токтогулов", "Toktogulov", "Токтогулова", "Toktogulova", CA),
    ("Эргашев", "Ergashev", "Эргашева", "Ergasheva", CA),
    ("Мирзоев", "Mirzoev", "Мирзоева", "Mirzoeva", CA),
    ("Давлатов", "Davlatov", "Давлатова", "Davlatova", CA),
    ("Алиев", "Aliev", "Алиева", "Alieva", CA),
    ("Исаев", "Isaev", "Исаева", "Isaeva", CA),
    ("Усенов", "Usenov", "Усенова", "Usenova", CA),
    ("Байғазиев", "Baigaziev", "Байғазиева", "Baigazieva", CA),
    ("Ким", "Kim", "Ким", "Kim", CA),
    ("Цой", "Tsoi", "Цой", "Tsoi", CA),
    ("Иванов", "Ivanov", "Иванова", "Ivanova", EE),
    ("Петров", "Petrov", "Петрова", "Petrova", EE),
    ("Смирнов", "Smirnov", "Смирнова", "Smirnova", EE),
    ("Кузнецов", "Kuznetsov", "Кузнецова", "Kuznetsova", EE),
    ("Попов", "Popov", "Попова", "Popova", EE),
    ("Соколов", "Sokolov", "Соколова", "Sokolova", EE),
    ("Морозов", "Morozov", "Морозова", "Morozova", EE),
    ("Волков", "Volkov", "Волкова", "Volkova", EE),
    ("Лебедев", "Lebedev", "Лебедева", "Lebedeva", EE),
    ("Новиков", "Novikov", "Новикова", "Novikova", EE),
    ("Фёдоров", "Fedorov", "Фёдорова", "Fedorova", EE),
    ("Ковальский", "Kovalskii", "Ковальская", "Kovalskaya", EE),
    ("Шевченко", "Shevchenko", "Шевченко", "Shevchenko", EE),
    ("Бойко", "Boiko", "Бойко", "Boiko", EE),
    ("Коваленко", "Kovalenko", "Коваленко", "Kovalenko", EE),
    ("Бондаренко", "Bondarenko", "Бондаренко", "Bondarenko", EE),
    ("Ткаченко", "Tkachenko", "Ткаченко", "Tkachenko", EE),
    ("Мельник", "Melnik", "Мельник", "Melnik", EE),
    ("Кравчук", "Kravchuk", "Кравчук", "Kravchuk", EE),
    ("Русу", "Rusu", "Русу", "Rusu", EE),
    ("Чебан", "Cheban", "Чебан", "Cheban", EE),
    ("Мунтяну", "Muntyanu", "Мунтяну", "Muntyanu", EE),
    ("Попеску", "Popesku", "Попеску", "Popesku", EE),
    ("Лупу", "Lupu", "Лупу", "Lupu", EE),
    ("Ротару", "Rotaru", "Ротару", "Rotaru", EE),
    ("Гуцу", "Gutsu", "Гуцу", "Gutsu", EE),
    ("Урсу", "Ursu", "Урсу", "Ursu", EE),
    ("Морару", "Moraru", "Морару", "Moraru", EE),
];

/// The given-name table for a gender.
pub(crate) fn given(female: bool) -> &'static [GivenName] {
    if female { FEMALE } else { MALE }
}

/// The indices of a table's entries from `region`.
pub(crate) fn indices_of<T>(table: &[T], region: Region, region_of: fn(&T) -> Region) -> Vec<u16> {
    table
        .iter()
        .enumerate()
        .filter(|(_, entry)| region_of(entry) == region)
        .map(|(i, _)| i as u16)
        .collect()
}

/// Cyrillic as an NGO typing in Windows-1251 would write it: the Kazakh and Kyrgyz letters that
/// code page lacks become the Russian letters ingest romanises the same way (қ -> к, ө -> о, ...).
pub(crate) fn russianise(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'ә' => 'а',
            'Ә' => 'А',
            'ғ' => 'г',
            'Ғ' => 'Г',
            'қ' => 'к',
            'Қ' => 'К',
            'ң' => 'н',
            'Ң' => 'Н',
            'ө' => 'о',
            'Ө' => 'О',
            'ұ' | 'ү' => 'у',
            'Ұ' | 'Ү' => 'У',
            'і' => 'и',
            'І' => 'И',
            other => other,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ctstats_ingest::identity::normalise_name;
    use std::collections::BTreeSet;

    fn all_pairs() -> Vec<(&'static str, &'static str)> {
        let mut pairs: Vec<(&str, &str)> = FEMALE.iter().chain(MALE).map(|n| (n.0, n.1)).collect();
        for f in FAMILY {
            pairs.push((f.0, f.1));
            pairs.push((f.2, f.3));
        }
        pairs
    }

    #[test]
    fn every_pair_normalises_equal() {
        for (cyrillic, latin) in all_pairs() {
            let want = normalise_name(latin);
            assert_eq!(normalise_name(cyrillic), want, "{cyrillic} / {latin}");
            assert_eq!(
                normalise_name(&russianise(cyrillic)),
                want,
                "{cyrillic} in cp1251"
            );
            assert_eq!(
                normalise_name(&cyrillic.to_uppercase()),
                want,
                "{cyrillic} in capitals"
            );
            assert!(
                !want.contains(' ') && !want.is_empty(),
                "{latin} is one word"
            );
        }
    }

    #[test]
    fn full_names_link_across_scripts() {
        assert_eq!(
            normalise_name("Асанова Айгуль"),
            normalise_name("Aigul Asanova")
        );
    }

    #[test]
    fn latin_forms_are_distinct() {
        let given: Vec<String> = FEMALE
            .iter()
            .chain(MALE)
            .map(|n| normalise_name(n.1))
            .collect();
        let given_set: BTreeSet<&String> = given.iter().collect();
        assert_eq!(given_set.len(), given.len(), "duplicate given name");
        for (forms, pick) in [
            (FAMILY.iter().map(|f| f.1).collect::<Vec<_>>(), "male"),
            (FAMILY.iter().map(|f| f.3).collect::<Vec<_>>(), "female"),
        ] {
            let set: BTreeSet<String> = forms.iter().map(|f| normalise_name(f)).collect();
            assert_eq!(set.len(), forms.len(), "duplicate {pick} family name");
            for f in &set {
                assert!(
                    !given_set.contains(f),
                    "{f} is both a given and a family name"
                );
            }
        }
    }

    #[test]
    fn russianised_names_fit_windows_1251() {
        for (cyrillic, _) in all_pairs() {
            let (_, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&russianise(cyrillic));
            assert!(!unmappable, "{cyrillic}");
        }
    }
}
